//! The probe program (C) the isolation tests build and run inside containers.

pub(crate) const PROBE_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/keyctl.h>

static void name(void) {
    const char *n = strerrorname_np(errno);
    printf("%s", n ? n : "E?");
}

static int err(const char *step) {
    printf("%s%s", step, *step ? " " : "");
    name();
    puts("");
    return 1;
}

/* Non-blocking: a pipe reached through /proc/PID/fd must not hang the probe. */
static int read_all(const char *path) {
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) return err("");
    char buf[65536];
    long n = 0, r;
    while ((r = read(fd, buf, sizeof buf)) > 0 && n < (1L << 20)) n += r;
    if (r < 0) return err("");
    printf("ok %ld\n", n);
    return 0;
}

#define OK (puts("ok"), 0)

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *c = argv[1];
    setvbuf(stdout, NULL, _IONBF, 0);
    if (!strcmp(c, "read") && argc == 3) return read_all(argv[2]);
    if (!strcmp(c, "write") && argc == 3) {
        int fd = open(argv[2], O_WRONLY);
        if (fd < 0 || write(fd, "x\n", 2) != 2) return err("");
        return OK;
    }
    if (!strcmp(c, "openw") && argc == 3)
        return open(argv[2], O_WRONLY | O_NONBLOCK) < 0 ? err("") : OK;
    if (!strcmp(c, "create") && argc == 3) {
        int fd = open(argv[2], O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0 || write(fd, "x\n", 2) != 2) return err("");
        return OK;
    }
    if (!strcmp(c, "mknod") && argc == 6) {
        mode_t t = argv[3][0] == 'b' ? S_IFBLK : S_IFCHR;
        if (mknod(argv[2], t | 0600, makedev(atoi(argv[4]), atoi(argv[5])))) return err("mknod");
        int fd = open(argv[2], O_RDONLY);
        if (fd < 0) return err("open");
        char b;
        if (read(fd, &b, 1) < 0) return err("read");
        return OK;
    }
    if (!strcmp(c, "mount") && argc == 5) return mount(argv[2], argv[3], argv[4], 0, NULL) ? err("") : OK;
    if (!strcmp(c, "bind") && argc == 4)
        return mount(argv[2], argv[3], NULL, MS_BIND | MS_REC, NULL) ? err("") : OK;
    if (!strcmp(c, "remount-rw") && argc == 3)
        return mount(NULL, argv[2], NULL, MS_REMOUNT | MS_BIND, NULL) ? err("") : OK;
    if (!strcmp(c, "umount") && argc == 3) return umount2(argv[2], MNT_DETACH) ? err("") : OK;
    if (!strcmp(c, "chroot-escape") && argc == 4) {
        /* chroot into a subdirectory without entering it, climb out with "..", root there:
           the classic escape. It cannot climb above the mount namespace's root. */
        mkdir(argv[2], 0755);
        if (chroot(argv[2])) return err("chroot");
        for (int i = 0; i < 64; i++)
            if (chdir("..")) return err("chdir");
        if (chroot(".")) return err("chroot");
        return read_all(argv[3]);
    }
    if (!strcmp(c, "handle") && argc == 3) {
        /* "shocker": a forged handle of inode 2 (an ext4 root) opened through a descriptor
           on the host file system behind PATH. */
        struct { struct file_handle h; unsigned char b[128]; } fh;
        int mnt;
        fh.h.handle_bytes = 128;
        if (name_to_handle_at(AT_FDCWD, argv[2], &fh.h, &mnt, 0)) return err("name");
        int fd = open(argv[2], O_RDONLY);
        if (fd < 0) return err("open");
        unsigned int forged[2] = {2, 0};
        fh.h.handle_type = 1;
        fh.h.handle_bytes = 8;
        memcpy(fh.h.f_handle, forged, 8);
        if (open_by_handle_at(fd, &fh.h, O_RDONLY) < 0) return err("name ok, open_by_handle");
        return OK;
    }
    if (!strcmp(c, "sethostname") && argc == 3)
        return sethostname(argv[2], strlen(argv[2])) ? err("") : OK;
    if (!strcmp(c, "kill") && argc == 3) return kill(atoi(argv[2]), SIGKILL) ? err("") : OK;
    if (!strcmp(c, "chown") && argc == 5)
        return chown(argv[2], atoi(argv[3]), atoi(argv[4])) ? err("") : OK;
    if (!strcmp(c, "rlimit") && argc == 2) {
        struct rlimit r;
        if (getrlimit(RLIMIT_NOFILE, &r)) return err("get");
        struct rlimit up = {r.rlim_max + 1, r.rlim_max + 1};
        if (!setrlimit(RLIMIT_NOFILE, &up)) return puts("raised"), 1;
        int e = errno;
        struct rlimit down = {r.rlim_cur / 2, r.rlim_max / 2};
        if (setrlimit(RLIMIT_NOFILE, &down)) return err("lower");
        errno = e;
        return err("lower ok, raise");
    }
    if (!strcmp(c, "key") && argc == 4) {
        /* add, read or drop the key named argv[3] in the user keyring. */
        if (argv[2][0] == 'a') {
            long id = syscall(SYS_add_key, "user", argv[3], "secret", 6, KEY_SPEC_USER_KEYRING);
            return id < 0 ? err("add") : OK;
        }
        long id = syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_USER_KEYRING, "user", argv[3], 0);
        if (id < 0) return err("search");
        if (argv[2][0] == 'd') return syscall(SYS_keyctl, KEYCTL_INVALIDATE, id) ? err("drop") : OK;
        char buf[64] = {0};
        if (syscall(SYS_keyctl, KEYCTL_READ, id, buf, sizeof buf - 1) < 0) return err("read");
        return printf("ok %s\n", buf), 0;
    }
    if (!strcmp(c, "ids") && argc == 2) return printf("%d %d\n", getuid(), geteuid()), 0;
    if (!strcmp(c, "userns") && argc == 5) {
        /* Every capability in a nested user namespace with its own mount and pid
           namespaces: the mounts copied there are locked (no unmask, no remount rw), and
           a new proc may not be mounted while the existing one is partly hidden. */
        mkdir(argv[4], 0755);
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID)) return err("unshare");
        pid_t p = fork();
        if (p < 0) return err("fork");
        if (p == 0) {
            printf("umount ");
            if (umount2(argv[2], MNT_DETACH)) name(); else printf("ok");
            printf(", remount-rw ");
            if (mount(NULL, argv[3], NULL, MS_REMOUNT | MS_BIND, NULL)) name(); else printf("ok");
            printf(", proc ");
            if (mount("proc", argv[4], "proc", 0, NULL)) name(); else printf("ok");
            printf(", sethostname ");
            if (sethostname("nested", 6)) name(); else printf("ok");
            puts("");
            _exit(0);
        }
        int st;
        waitpid(p, &st, 0);
        return 0;
    }
    fprintf(stderr, "probe: bad command\n");
    return 2;
}
"#;
