/* libFuzzer target for domain XML. Beyond parse-format-reparse, the last input
 * byte picks an edit applied to every disk through the model (copy, flatten,
 * move to NFS, move to a pool volume or eject), because applying a model onto an
 * arbitrary user document is where the domain code does its riskiest work; the
 * edited document must then parse again and format to itself. */
#include "fuzz-common.h"

static VsStorageSource *
file_source(const char *path, const char *format)
{
    VsStorageSource *src = vs_storage_source_new(VS_DISK_TYPE_FILE);

    src->path = g_strdup(path);
    src->format = g_strdup(format);
    return src;
}

static void
edit_disk(VsDiskDef *disk, unsigned int how)
{
    VsStorageSource *src = disk->src;
    g_autofree char *where = g_strdup_printf("/restored/%s.raw", disk->target_dev);

    switch (how) {
    case 1:
        disk->src = vs_storage_source_copy(src);
        vs_storage_source_free(src);
        return;
    case 2:
        if (!src)
            return;
        vs_storage_source_free(src->backing);
        src->backing = NULL;
        src->backing_terminated = true;
        if (src->type == VS_DISK_TYPE_FILE || src->type == VS_DISK_TYPE_BLOCK ||
            src->type == VS_DISK_TYPE_DIR) {
            g_free(src->path);
            src->path = g_strdup(where);
            g_free(src->format);
            src->format = g_strdup("raw");
        }
        return;
    case 3:
        vs_storage_source_free(src);
        disk->src = src = vs_storage_source_new(VS_DISK_TYPE_NETWORK);
        src->protocol = g_strdup("nfs");
        src->name = g_strdup(where);
        src->format = g_strdup("qcow2");
        src->auth_username = g_strdup("fuzz");
        src->initiator_iqn = g_strdup("iqn.2024-01.com.example:fuzz");
        g_ptr_array_add(src->hosts, vs_host_def_new("nfs.example.com", "2049"));
        src->backing = file_source("/base.qcow2", "qcow2");
        return;
    case 4:
        vs_storage_source_free(src);
        disk->src = NULL;
        if (disk->device == VS_DISK_DEVICE_CDROM || disk->device == VS_DISK_DEVICE_FLOPPY)
            return;
        disk->src = src = vs_storage_source_new(VS_DISK_TYPE_VOLUME);
        src->pool = g_strdup("default");
        src->volume = g_strdup(disk->target_dev);
        src->mode = g_strdup("direct");
        src->backing_terminated = true;
        return;
    default:
        return;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autofree char *xml = fuzz_string(data, size);
    g_autoptr(GError) error = NULL;
    g_autoptr(VsDomainDef) def = vs_domain_def_parse_string(xml, FUZZ_FILENAME, &error);
    g_autoptr(VsDomainDef) again = NULL;
    g_autoptr(VsDomainDef) edited = NULL;
    g_autofree char *out = NULL;
    g_autofree char *out2 = NULL;
    g_autofree char *out3 = NULL;
    g_autofree char *out4 = NULL;
    unsigned int how = size ? data[size - 1] % 5 : 0;

    if (!def) {
        fuzz_check_parse_error(error);
        return 0;
    }
    FUZZ_CHECK(error == NULL);
    out = vs_domain_def_format(def, &error);
    if (!out)
        fprintf(stderr, "format failed: %s\n", error->message);
    FUZZ_CHECK(out != NULL);
    again = vs_domain_def_parse_string(out, FUZZ_FILENAME, &error);
    if (!again)
        fprintf(stderr, "reparse failed: %s\n--- output:\n%s\n", error->message, out);
    FUZZ_CHECK(again != NULL);
    out2 = vs_domain_def_format(again, &error);
    FUZZ_CHECK(out2 != NULL);
    FUZZ_CHECK(strcmp(out, out2) == 0);

    for (guint i = 0; i < again->disks->len; i++)
        edit_disk(g_ptr_array_index(again->disks, i), how);
    out3 = vs_domain_def_format(again, &error);
    if (!out3)
        fprintf(stderr, "format after edit %u failed: %s\n", how, error->message);
    FUZZ_CHECK(out3 != NULL);
    if (how <= 1)
        FUZZ_CHECK(strcmp(out, out3) == 0);
    edited = vs_domain_def_parse_string(out3, FUZZ_FILENAME, &error);
    if (!edited)
        fprintf(stderr, "reparse after edit %u failed: %s\n--- output:\n%s\n", how,
                error->message, out3);
    FUZZ_CHECK(edited != NULL);
    out4 = vs_domain_def_format(edited, &error);
    FUZZ_CHECK(out4 != NULL);
    FUZZ_CHECK(strcmp(out3, out4) == 0);
    return 0;
}
