"""The VM's boot image (what boot2docker.iso was): download+cache, NoCloud seed, offline build."""
