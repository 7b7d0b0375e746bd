#!/bin/sh
# rootfs.sh OUT HODEI BUSYBOX CA_BUNDLE lays out in OUT the root file system
# of Hodei's container image (see the Dockerfile and docs/deploy.md): the
# static hodei binary at /usr/local/bin/hodei (and /hodei, where the
# kubernetes provider's init container copies it from), a static busybox
# with its applets in /bin (the /bin/sh of steps, the cp of that init
# container), the CA certificates, the users of deploy/container/passwd, the
# data directory /var/lib/hodei owned by hodei (65532) and /tmp. The
# Dockerfile's build stage runs it, and so do the tests, on a binary built
# outside (internal/deploy). Run it as root: it sets owners.
set -eu
[ "$#" = 4 ] || { echo "usage: rootfs.sh OUT HODEI BUSYBOX CA_BUNDLE" >&2; exit 2; }
out=$1 hodei=$2 busybox=$3 ca=$4
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out/usr/local/bin" "$out/bin" "$out/etc/ssl/certs" "$out/var/lib/hodei" "$out/tmp" "$out/root"
cp "$hodei" "$out/usr/local/bin/hodei"
chmod 0755 "$out/usr/local/bin/hodei"
ln -sf usr/local/bin/hodei "$out/hodei"
cp "$busybox" "$out/bin/busybox"
chmod 0755 "$out/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$out/bin/$applet"
done
mkdir -p "$out/sbin" "$out/usr/bin"
ln -sf ../bin/nologin "$out/sbin/nologin"
ln -sf ../../bin/env "$out/usr/bin/env"
cp "$ca" "$out/etc/ssl/certs/ca-certificates.crt"
cp "$here/passwd" "$out/etc/passwd"
cp "$here/group" "$out/etc/group"
chmod 0644 "$out/etc/passwd" "$out/etc/group" "$out/etc/ssl/certs/ca-certificates.crt"
chown 65532:65532 "$out/var/lib/hodei"
chmod 0700 "$out/var/lib/hodei" "$out/root"
chmod 1777 "$out/tmp"
