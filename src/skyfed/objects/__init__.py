"""Object storage federation: Swift clusters registered with zones, one Swift API over them."""
