"""The one error type of the image package."""


class ImageError(Exception):
    """An image could not be fetched, verified, built or used; the message says why."""
