#!/usr/bin/env bash
# Local stand-ins for the images docker/ pulls, for a Docker host that reaches no image registry
# but does reach a Debian mirror. Run it once, as root, before ./run.sh dev:
#
#   docker/standin-base.sh            make the images that are missing
#   docker/standin-base.sh --force    make them all again
#
# It makes, under the names docker/Dockerfile and docker/docker-compose.yml use:
#   debian:bookworm-slim         debootstrap --variant=minbase bookworm, imported with docker import
#   python:3.11-slim             that + Debian's python3 (3.11), pip and venv
#   redis:7                      that + Debian's redis-server (7.0), run like the official image
#   quay.io/coreos/etcd:v3.5.17  that + Debian's etcd-server and etcd-client (3.4, which takes the
#                                same flags the compose file passes)
# Each carries the label org.gochat-py.standin. They are stand-ins: once a registry is reachable,
# remove them (docker rmi) and let Docker pull the real images.
#
# The CA certificates in /usr/local/share/ca-certificates of this machine are copied into the
# base, so that pip inside the build trusts what this machine trusts (a proxy that inspects TLS).
#
# Environment: DEBIAN_MIRROR (http://deb.debian.org/debian), STANDIN_WORKDIR (/var/tmp/gochat-standin;
# the debootstrapped tree is kept there and reused until --force).
set -euo pipefail

MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
WORKDIR=${STANDIN_WORKDIR:-/var/tmp/gochat-standin}
LABEL=org.gochat-py.standin
force=false
case "${1:-}" in
    --force) force=true ;;
    "") ;;
    *) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac

say() { printf 'standin-base: %s\n' "$*" >&2; }

command -v docker >/dev/null 2>&1 || { say "docker is not installed"; exit 1; }
docker info >/dev/null 2>&1 || { say "the Docker daemon does not answer (docker info)"; exit 1; }

missing() {  # true when the image must be made
    $force || ! docker image inspect "$1" >/dev/null 2>&1
}

build() {  # build TAG from the Dockerfile on stdin (no context)
    local tag=$1 started=$SECONDS
    say "building $tag"
    docker build --label "$LABEL=$tag" -t "$tag" - >&2
    say "$tag built in $((SECONDS - started)) s"
}

if missing debian:bookworm-slim; then
    if [ "$(id -u)" != 0 ]; then
        say "debootstrap needs root: sudo $0 $*"
        exit 1
    fi
    if ! command -v debootstrap >/dev/null 2>&1; then
        say "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
    fi
    rootfs=$WORKDIR/rootfs
    if $force || [ ! -f "$WORKDIR/rootfs.done" ]; then
        rm -rf "$rootfs" "$WORKDIR/rootfs.done"
        mkdir -p "$WORKDIR"
        say "debootstrap bookworm from $MIRROR into $rootfs (a few minutes)"
        debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$WORKDIR/debootstrap.log" 2>&1 \
            || { say "debootstrap failed; see $WORKDIR/debootstrap.log"; exit 1; }
        touch "$WORKDIR/rootfs.done"
    fi
    # As the official slim image: no apt lists or caches; sources from the mirror used here.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$MIRROR" "$MIRROR" >"$rootfs/etc/apt/sources.list"
    mkdir -p "$rootfs/usr/local/share/ca-certificates"
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    fi
    say "importing debian:bookworm-slim"
    tar -C "$rootfs" -c . | docker import \
        --change "LABEL $LABEL=debian:bookworm-slim" --change 'CMD ["bash"]' - debian:bookworm-slim >/dev/null
fi

if missing python:3.11-slim; then
    build python:3.11-slim <<'EOF'
FROM debian:bookworm-slim
ENV LANG=C.UTF-8
# pip installs into /usr/local as in the official image (Debian's guard against that is removed).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-pip python3-venv python-is-python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/* /usr/lib/python3*/EXTERNALLY-MANAGED
CMD ["python3"]
EOF
fi

if missing redis:7; then
    build redis:7 <<'EOF'
FROM debian:bookworm-slim
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data && chown redis:redis /data \
    && printf '%s\n' '#!/bin/sh' \
        '# as the official image: without a config file, reachable from the other containers' \
        'if [ "$1" = redis-server ]; then case "${2:-}" in *.conf) ;; *) shift; set -- redis-server --protected-mode no "$@" ;; esac; fi' \
        'exec "$@"' >/usr/local/bin/docker-entrypoint.sh \
    && chmod +x /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
VOLUME /data
USER redis
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
EOF
fi

if missing quay.io/coreos/etcd:v3.5.17; then
    build quay.io/coreos/etcd:v3.5.17 <<'EOF'
FROM debian:bookworm-slim
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends etcd-server etcd-client \
    && rm -rf /var/lib/apt/lists/*
EXPOSE 2379 2380
CMD ["etcd"]
EOF
fi

docker image ls --filter "label=$LABEL" >&2
say "done; ./run.sh dev uses them like the pulled images"
