/* The fixture of the whole-run backup tests (test-backup-run.c,
 * test-backup-storage.c): up to three running domains vm1..vm3 of the scripted
 * control plane (fake-control.h), each with a real disk image (raw, or qcow2
 * made by qemu-img) and optionally a second raw disk vdb, a real repository and
 * state directory in a temporary directory, the scripted guardian (the test
 * program run again as `guardian ...`), the calls a run makes of libvirt for
 * its plan and for an overlay's commit, and what a user checks afterwards: the
 * backup's domains and data read back, notes, no journal left. */
#pragma once

#include "backup-internal.h"
#include "fake-control.h"

#define DISK_SIZE (2 * 1024 * 1024)

extern const char *const uuids[3];

typedef struct {
    char *dir;                   /* everything of the test, removed at teardown */
    char *repo, *state, *push_dir;
    VsFake *fake;
    virDomainPtr vm[3];
    char *disk[3];               /* the domain's image */
    char *ref[3];                /* its data, raw: what a backup must hold */
    char *disk2[3];              /* its second disk, vdb (raw), or NULL: none */
    bool qcow2;
    /* Answers each block_commit expect_commit_disk queues, when set (the
     * commit's effect on the disk, a note of when it came). */
    VsFakeReplyFunc on_commit;
    gpointer on_commit_data;
} Fixture;

/* EXE guardian ...: the program's main hands these arguments over. */
int scripted_guardian(int argc, char **argv);
/* What the scripted guardian heard ("" when it never ran). */
char *guardian_log(Fixture *fx);

void run_tool(const char *const *argv);
/* Domain I's XML with vda on SOURCE (NULL: its own image). */
char *domain_xml(Fixture *fx, int i, const char *source);
/* Gives domain I a second raw disk, vdb, holding data of its own; before the
 * plan. Its path. */
const char *add_second_disk(Fixture *fx, int i);

/* DATA: GINT_TO_POINTER(1) for qcow2 images. */
void setup(Fixture *fx, gconstpointer data);
void teardown(Fixture *fx, gconstpointer data);
void options(Fixture *fx, VsBackupOptions *o);
/* Backs up the domains of N (indexes, -1 ends) with O. */
VsBackupResult *backup(Fixture *fx, const int *n, const VsBackupOptions *o, GError **error);

/* Expects the call FMT... next, answered with REPLY. */
void add(Fixture *fx, const char *reply, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
/* The overlay the run made beside image PATH (its name has the run's id), or NULL. */
char *find_overlay_of(Fixture *fx, const char *path);
/* ... beside domain I's vda. */
char *find_overlay(Fixture *fx, int i);
void expect_plan(Fixture *fx, int i);
void expect_uses_nothing(Fixture *fx, int i);
/* Domain I's overlay of disk TARGET ("vda", "vdb") committed back; then,
 * once all are, the guest not paused (expect_commit: vda and that). */
void expect_commit_disk(Fixture *fx, int i, const char *target);
void expect_resume_check(Fixture *fx, int i);
void expect_commit(Fixture *fx, int i);

char *notes_of(const VsBackupDomainResult *d);
VsBackupDomainResult *result_of(VsBackupResult *r, int i);
/* Backup ID holds exactly the domains of IN (-1 ends), verified, each vda read
 * back equal to its domain's data; the others are not in it. */
void assert_backup(Fixture *fx, const char *id, const int *in);
void assert_no_journal(Fixture *fx);
