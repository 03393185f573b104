/* Reaching files in a repository that someone else may have written: what is
 * read must be a regular file (never a FIFO to block on, a directory, a device,
 * nor a symlink to anywhere), and what is walked or deleted must be a real
 * directory of the repository, reached with openat from the repository's own
 * directory without following a symlink. The fixed directories (chunks/,
 * chunks/XX, backups/, tmp/, checkpoints/ and its TAG directories) are checked
 * once when the repository is opened, so that every command refuses a
 * tampered repository with the same error; gc and prune walk by descriptor
 * too, so a directory swapped for a symlink after that check is still never
 * followed. */
#include "config.h"
#include "repo-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *
repo_strerror(int err)
{
    if (err == REPO_ERR_NOT_REGULAR)
        return "not a regular file";
    return g_strerror(err);
}

static const char *
kind_of(mode_t mode)
{
    if (S_ISLNK(mode))
        return "a symbolic link";
    if (S_ISREG(mode))
        return "a regular file";
    if (S_ISDIR(mode))
        return "a directory";
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISSOCK(mode))
        return "a socket";
    return "a device";
}

int
repo_open_regular(int dirfd, const char *path, int *fd, struct stat *st)
{
    struct stat own;
    int f, err;

    if (!st)
        st = &own;
    /* O_NONBLOCK: opening a FIFO for reading would wait for a writer. */
    f = openat(dirfd, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (f < 0)
        return errno == ELOOP ? REPO_ERR_NOT_REGULAR : errno;
    err = fstat(f, st) < 0 ? errno : S_ISREG(st->st_mode) ? 0 : REPO_ERR_NOT_REGULAR;
    if (err) {
        close(f);
        return err;
    }
    *fd = f;
    return 0;
}

int
repo_read_regular(int dirfd, const char *path, char **text, size_t *len)
{
    struct stat st;
    g_autofree char *buf = NULL;
    size_t n = 0, cap;
    int fd, err = repo_open_regular(dirfd, path, &fd, &st);

    if (err)
        return err;
    /* The size is a hint only: the file may grow or shrink while read. One
     * spare byte beyond it lets the read that finds the end need no more. */
    cap = (size_t)st.st_size + 2;
    buf = g_malloc(cap);
    for (;;) {
        ssize_t r;

        if (n + 1 >= cap) {
            cap *= 2;
            buf = g_realloc(buf, cap);
        }
        r = read(fd, buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            err = r < 0 ? errno : 0;
            break;
        }
        n += (size_t)r;
    }
    close(fd);
    if (err)
        return err;
    buf[n] = '\0';
    *text = g_steal_pointer(&buf);
    if (len)
        *len = n;
    return 0;
}

bool
repo_open_subdir(int parent, const char *parent_path, const char *name, int *fd, GError **error)
{
    struct stat st;
    int f = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int err = errno;

    *fd = f;
    if (f >= 0 || err == ENOENT)
        return true;
    if ((err == ENOTDIR || err == ELOOP) && fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED,
                    "repo: %s/%s must be a real directory, but it is %s; the repository was changed "
                    "by someone else: check it, then replace it with a directory", parent_path, name,
                    kind_of(st.st_mode));
        return false;
    }
    g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: opening %s/%s: %s", parent_path, name, g_strerror(err));
    return false;
}

bool
repo_open_dir(VsRepo *repo, const char *rel, const char *name, int *fd, GError **error)
{
    g_autofree char *rel_path = g_build_filename(repo->path, rel, NULL);
    int root = open(repo->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), mid = -1, err;
    bool ok;

    *fd = -1;
    if (root < 0) {
        err = errno;
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s: %s", repo->path, g_strerror(err));
        return false;
    }
    ok = repo_open_subdir(root, repo->path, rel, name ? &mid : fd, error);
    if (ok && name && mid >= 0)
        ok = repo_open_subdir(mid, rel_path, name, fd, error);
    if (mid >= 0)
        close(mid);
    close(root);
    return ok;
}

/* NAME in PARENT, when it exists, is of the kind the layout wants. */
static bool
check_entry(int parent, const char *parent_path, const char *name, bool want_dir, GError **error)
{
    struct stat st;
    int err;

    if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if ((err = errno) == ENOENT)
            return true;
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s/%s: %s", parent_path, name, g_strerror(err));
        return false;
    }
    if (want_dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode))
        return true;
    g_set_error(error, VS_ERROR, VS_ERROR_FAILED,
                "repo: %s/%s must be a real %s, but it is %s; the repository was changed by someone "
                "else: check it, then replace it with a %s", parent_path, name,
                want_dir ? "directory" : "file", kind_of(st.st_mode), want_dir ? "directory" : "file");
    return false;
}

static bool
hex_name(const char *s)
{
    for (; *s; s++)
        if (!g_ascii_isxdigit(*s))
            return false;
    return true;
}

static bool
check_children(int parent, const char *path, const char *dir, GError **error)
{
    g_autofree char *sub = g_strdup_printf("%s/%s", path, dir);
    struct dirent *de;
    DIR *d;
    int fd;
    bool ok = true;

    if (!repo_open_subdir(parent, path, dir, &fd, error))
        return false;
    if (fd < 0)
        return true;
    if (!(d = fdopendir(fd))) {
        close(fd);
        return true;           /* only out of memory; the walkers will say */
    }
    /* chunks/XX and checkpoints/TAG are directories, checkpoints/tag a file;
     * any other name is not ours, and left alone. */
    while (ok && (de = readdir(d))) {
        if (!strcmp(dir, "checkpoints") && !strcmp(de->d_name, "tag"))
            ok = check_entry(dirfd(d), sub, de->d_name, false, error);
        else if (strlen(de->d_name) == (strcmp(dir, "chunks") ? 8 : 2) && hex_name(de->d_name))
            ok = check_entry(dirfd(d), sub, de->d_name, true, error);
    }
    closedir(d);
    return ok;
}

bool
repo_check_layout(const char *path, GError **error)
{
    static const char *const dirs[] = { "chunks", "backups", "tmp", "checkpoints", NULL };
    static const char *const files[] = { REPO_MARKER, "lock", NULL };
    int root = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), err;
    bool ok = true;

    if (root < 0) {
        err = errno;
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s: %s", path, g_strerror(err));
        return false;
    }
    for (size_t i = 0; ok && dirs[i]; i++)
        ok = check_entry(root, path, dirs[i], true, error);
    for (size_t i = 0; ok && files[i]; i++)
        ok = check_entry(root, path, files[i], false, error);
    if (ok)
        ok = check_children(root, path, "chunks", error) && check_children(root, path, "checkpoints", error);
    close(root);
    return ok;
}
