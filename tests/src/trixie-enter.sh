#!/bin/sh
# trixie-enter.sh (tests/src/trixie.rs writes it into the harness directory): run the script
# $S/inner.sh as the test user inside the Debian trixie root $ROOT, the way a user of a trixie
# machine runs podman 5. Call it as root inside `unshare -m --propagation private` (and inside
# scripts/sealed-netns): the network namespace stays the sealed one.
# - an overlay over $ROOT (the cached root is never written) in a fresh directory under $S;
# - the test user ($U:$G) in its passwd, group, subuid and subgid; podman set up for a machine
#   without systemd (cgroupfs, no cgroups: the host's hybrid cgroup mount is hidden under a
#   tmpfs, crun refuses it), vfs storage, pasta looked up in /opt/rr first;
# - $S/pasta, if present, as /opt/rr/pasta; $S bound at /rr; $S/resolv.conf as /etc/resolv.conf;
# - /proc, /sys, /dev, a tmpfs /tmp and /run (with /run/user/$U), then pivot_root (not chroot:
#   the kernel refuses user namespaces to a chrooted process) and the old root detached.
set -eu
W=$(mktemp -d "$S/overlay.XXXXXX")
mkdir -p "$W/upper" "$W/work" "$W/root"
mount -t overlay overlay -o "lowerdir=$ROOT,upperdir=$W/upper,workdir=$W/work" "$W/root"
r=$W/root
echo "rrtest:x:$U:$G::/home/rrtest:/bin/sh" >> "$r/etc/passwd"
echo "rrtest:x:$G:" >> "$r/etc/group"
echo "rrtest:100000:65536" > "$r/etc/subuid"
echo "rrtest:100000:65536" > "$r/etc/subgid"
cp "$S/resolv.conf" "$r/etc/resolv.conf"
mkdir -p "$r/home/rrtest/.config/containers" "$r/opt/rr" "$r/rr"
cat > "$r/home/rrtest/.config/containers/containers.conf" <<'CONF'
[containers]
cgroups = "disabled"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
helper_binaries_dir = ["/opt/rr", "/usr/local/libexec/podman", "/usr/local/lib/podman", "/usr/libexec/podman", "/usr/lib/podman"]
CONF
printf '[storage]\ndriver = "vfs"\n' > "$r/home/rrtest/.config/containers/storage.conf"
chown -R "$U:$G" "$r/home/rrtest"
if [ -f "$S/pasta" ]; then cp "$S/pasta" "$r/opt/rr/pasta"; fi
mount --bind "$S" "$r/rr"
mount -t proc proc "$r/proc"
mount --rbind /sys "$r/sys"
mount -t tmpfs tmpfs "$r/sys/fs/cgroup"
mount --rbind /dev "$r/dev"
mount -t tmpfs tmpfs "$r/tmp"
mount -t tmpfs tmpfs "$r/run"
mkdir -p "$r/run/user/$U"
chown "$U:$G" "$r/run/user/$U"
chmod 0700 "$r/run/user/$U"
cd "$r"
mkdir -p oldroot
pivot_root . oldroot
umount -l /oldroot
rmdir /oldroot
mount --make-rshared /
cd /
exec setpriv --reuid="$U" --regid="$G" --init-groups -- env -i HOME=/home/rrtest USER=rrtest \
  LOGNAME=rrtest XDG_RUNTIME_DIR="/run/user/$U" PODMAN_IGNORE_CGROUPSV1_WARNING=1 \
  PATH=/usr/sbin:/usr/bin:/sbin:/bin /bin/sh -eu /rr/inner.sh
