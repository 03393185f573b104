/* Replacing the manifest of a backup that exists, for the one change a backup
 * may undergo after its commit: `vault` copying a `--no-copy` backup's storage
 * snapshots into the repository (issue 15). The manifest is the commit point
 * here as at the first commit: the new one is checked exactly as commit checks
 * a manifest (and parsed back as a loader would), written to a temp file,
 * fsynced, and exchanged with the old one in one rename (RENAME_EXCHANGE), so
 * a reader sees the old manifest or the new, never neither nor a torn one, and
 * a backup removed meanwhile (prune) is not brought back. Its times stay: the
 * backup's point in time and completion, by which retention keeps it, are not
 * the vault's. The summary beside it is removed before the exchange and
 * written after, so that no stale one describes the new manifest. */
#include "config.h"
#include "repo-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Puts TMP in FINAL's place only if FINAL exists; 0, ENOENT when it does not,
 * or another errno. TMP is gone afterwards either way. */
static int
exchange_existing(const char *tmp, const char *final)
{
    struct stat st;
    int err = 0;

    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_EXCHANGE) == 0) {
        /* TMP holds the old manifest now. */
        unlink(tmp);
        return 0;
    }
    err = errno;
    if (err == EINVAL || err == ENOSYS || err == EOPNOTSUPP) {
        /* A file system without RENAME_EXCHANGE: the check and the rename are
         * two steps, the best it allows. */
        if (lstat(final, &st) < 0)
            err = errno;
        else if (!S_ISREG(st.st_mode))
            err = REPO_ERR_NOT_REGULAR;
        else
            err = rename(tmp, final) == 0 ? 0 : errno;
    }
    if (err)
        unlink(tmp);
    return err;
}

bool
vs_repo_replace_manifest(VsRepo *repo, VsManifest *m, GError **error)
{
    g_autofree char *where = NULL, *json = NULL, *tmp = NULL, *final = NULL, *summary = NULL;
    g_autoptr(VsManifest) back = NULL;
    g_autoptr(GError) perr = NULL;
    int err;

    if (!m->id || !repo_id_valid(m->id) || !strcmp(m->id, "latest")) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "repo: %s: replacing a manifest needs the backup's "
                    "full id, not \"%s\"", repo->path, m->id ? m->id : "");
        return false;
    }
    where = g_strdup_printf("repo: %s: manifest %s", repo->path, m->id);
    if (!manifest_prepare(repo, m, where, error))
        return false;
    json = vs_manifest_to_json(m);
    /* What a loader will get: parsed back with the loader's own checks. */
    if (!(back = vs_manifest_from_json(json, where, &perr))) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "%s: the new manifest would not load (%s); nothing "
                    "replaced", where, perr->message);
        return false;
    }
    final = g_strdup_printf("%s/%s.json", repo->backups_dir, m->id);
    summary = g_strdup_printf("%s/%s.summary", repo->backups_dir, m->id);
    if ((err = repo_write_temp(&repo->perms, repo->tmp_dir, "manifest", json, strlen(json), &tmp))) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "%s: writing the new manifest to %s: %s; nothing replaced",
                    where, repo->tmp_dir, g_strerror(err));
        return false;
    }
    (void)unlink(summary);
    if ((err = exchange_existing(tmp, final))) {
        g_set_error(error, VS_ERROR, err == ENOENT ? VS_ERROR_NOT_FOUND : VS_ERROR_IO,
                    "%s: replacing %s: %s", where, final,
                    err == ENOENT ? "the backup is gone (removed meanwhile?); nothing replaced"
                                  : repo_strerror(err));
        return false;
    }
    repo_write_summary(repo, m, strlen(json));
    if ((err = repo_fsync_dir(repo->backups_dir))) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "%s: syncing %s: %s", where, repo->backups_dir,
                    g_strerror(err));
        return false;
    }
    return true;
}
