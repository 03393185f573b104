/* Manifest JSON: a full round trip (every field, awkward strings, null freeze
 * figures), and the strict parser's refusals, each of which must name the file
 * and the field so that a person can find the damage. The invalid inputs are
 * made by editing the JSON that vs_manifest_to_json really writes. */
#include "repo-test-util.h"

#define CS 65536u
/* One byte more than a domain name may have. */
#define REPO_TEST_LONG_NAME 129

static const char *hex_a = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
static const char *hex_b = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

static VsManifest *
sample(void)
{
    VsManifest *m = vs_manifest_new();
    VsManifestDomain *d = vs_manifest_add_domain(m, "web1");
    VsManifestDomain *d2 = vs_manifest_add_domain(m, "db \"prod\"");
    VsManifestDisk *k = vs_manifest_domain_add_disk(d, "vda");
    VsManifestDisk *k2 = vs_manifest_domain_add_disk(d, "vdb");
    VsManifestImage *img;
    VsChunkRef r;

    g_free(m->id);
    m->id = g_strdup("20261123T141600Z-3f9a2c");
    m->chunk_size = CS;
    m->started = 1795443360123456;
    m->completed = 1795443421000001;
    m->group_freeze_ms = 1234;
    d->uuid = g_strdup("2f8a9d3e-4b1c-4e6f-9a7b-1c2d3e4f5a6b");
    d->consistency = g_strdup("quiesced");
    d->freeze_ms = 812;
    d->xml = g_strdup("<domain type='kvm'>\n  <name>web1</name>\n\t<description>\"q\" \\ é \x01 ü</description>\n</domain>\n");
    k->format = g_strdup("qcow2");
    k->virtual_size = 3 * CS + 100;
    k->source = g_strdup("/var/lib/libvirt/images/web1.qcow2");
    k->bytes_read = 2 * CS;
    k->bytes_stored = 4242;
    img = g_new0(VsManifestImage, 1);
    img->path = g_strdup("/var/lib/libvirt/images/web1.qcow2");
    img->format = g_strdup("qcow2");
    g_ptr_array_add(k->chain, img);
    img = g_new0(VsManifestImage, 1);
    img->path = g_strdup("/var/lib/libvirt/images/base.raw");
    img->format = g_strdup("raw");
    g_ptr_array_add(k->chain, img);
    r = (VsChunkRef){ .offset = 0, .length = CS };
    vs_digest_from_hex(hex_a, &r.digest);
    g_array_append_val(k->chunks, r);
    r = (VsChunkRef){ .offset = 3 * CS, .length = 100 };
    vs_digest_from_hex(hex_b, &r.digest);
    g_array_append_val(k->chunks, r);
    k2->format = g_strdup("raw");
    k2->virtual_size = 0;
    /* d2: crash-consistent, no uuid, no xml, no disks */
    d2->consistency = g_strdup("crash");
    return m;
}

static void
test_round_trip(void)
{
    g_autoptr(VsManifest) m = sample();
    g_autoptr(VsManifest) back = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree char *json = vs_manifest_to_json(m), *json2 = NULL;
    VsManifestDomain *d, *d2;
    VsManifestDisk *k;
    VsManifestImage *img;

    back = vs_manifest_from_json(json, "sample.json", &err);
    g_assert_no_error(err);
    json2 = vs_manifest_to_json(back);
    g_assert_cmpstr(json, ==, json2);

    g_assert_cmpint(back->format_version, ==, 1);
    g_assert_cmpstr(back->id, ==, m->id);
    g_assert_cmpuint(back->chunk_size, ==, CS);
    g_assert_cmpint(back->started, ==, m->started);
    g_assert_cmpint(back->completed, ==, m->completed);
    g_assert_cmpint(back->group_freeze_ms, ==, 1234);
    g_assert_cmpstr(back->hostname, ==, m->hostname);
    g_assert_cmpuint(back->domains->len, ==, 2);
    d = vs_manifest_find_domain(back, "web1");
    g_assert_nonnull(d);
    g_assert_cmpstr(d->uuid, ==, "2f8a9d3e-4b1c-4e6f-9a7b-1c2d3e4f5a6b");
    g_assert_cmpstr(d->consistency, ==, "quiesced");
    g_assert_cmpint(d->freeze_ms, ==, 812);
    g_assert_cmpstr(d->xml, ==, ((VsManifestDomain *)g_ptr_array_index(m->domains, 0))->xml);
    d2 = vs_manifest_find_domain(back, "db \"prod\"");
    g_assert_nonnull(d2);
    g_assert_null(d2->uuid);
    g_assert_null(d2->xml);
    g_assert_cmpstr(d2->consistency, ==, "crash");
    g_assert_cmpint(d2->freeze_ms, ==, -1);
    g_assert_cmpuint(d2->disks->len, ==, 0);
    g_assert_null(vs_manifest_find_domain(back, "nope"));
    k = vs_manifest_find_disk(d, "vda");
    g_assert_nonnull(k);
    g_assert_null(vs_manifest_find_disk(d, "vdz"));
    g_assert_cmpstr(k->format, ==, "qcow2");
    g_assert_cmpuint(k->virtual_size, ==, 3 * CS + 100);
    g_assert_cmpstr(k->source, ==, "/var/lib/libvirt/images/web1.qcow2");
    g_assert_cmpuint(k->bytes_read, ==, 2 * CS);
    g_assert_cmpuint(k->bytes_stored, ==, 4242);
    g_assert_cmpuint(k->chain->len, ==, 2);
    img = g_ptr_array_index(k->chain, 1);
    g_assert_cmpstr(img->path, ==, "/var/lib/libvirt/images/base.raw");
    g_assert_cmpstr(img->format, ==, "raw");
    g_assert_cmpuint(k->chunks->len, ==, 2);
    g_assert_cmpuint(g_array_index(k->chunks, VsChunkRef, 1).offset, ==, 3 * CS);
    g_assert_cmpuint(g_array_index(k->chunks, VsChunkRef, 1).length, ==, 100);
    {
        char hex[VS_DIGEST_HEX_LEN];

        vs_digest_to_hex(&g_array_index(k->chunks, VsChunkRef, 1).digest, hex);
        g_assert_cmpstr(hex, ==, hex_b);
    }
    /* the text itself: one chunk per line, readable by jq and grep */
    {
        g_autofree char *line = g_strdup_printf("[196608, 100, \"%s\"]", hex_b);

        g_assert_nonnull(strstr(json, line));
        g_assert_nonnull(strstr(json, "\"started\": \"2026-11-23T14:16:00.123456Z\""));
        g_assert_nonnull(strstr(json, "\"freeze_ms\": null"));
    }
}

static void
test_new(void)
{
    g_autoptr(VsManifest) a = vs_manifest_new(), b = vs_manifest_new();
    GRegex *re = g_regex_new("^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$", 0, 0, NULL);

    g_assert_true(g_regex_match(re, a->id, 0, NULL));
    g_assert_cmpstr(a->id, !=, b->id);
    g_assert_cmpint(a->format_version, ==, VS_REPO_FORMAT_VERSION);
    g_assert_cmpint(a->group_freeze_ms, ==, -1);
    g_assert_cmpint(llabs(a->started - g_get_real_time()), <, 10 * G_USEC_PER_SEC);
    g_regex_unref(re);
}

typedef struct {
    GString *seen;
    guint stop_after;          /* 0: never stop */
} ForeachSeen;

static bool
foreach_note(const VsManifestDomain *d, const VsManifestDisk *disk, const VsChunkRef *ref, void *opaque)
{
    ForeachSeen *f = opaque;

    g_string_append_printf(f->seen, "%s/%s@%" G_GUINT64_FORMAT " ", d->name, disk->target, ref->offset);
    return !f->stop_after || --f->stop_after > 0;
}

/* Every reference once, domain by domain, disk by disk, by offset; a callback
 * that returns false ends the walk there, and the walk says so. */
static void
test_foreach_chunk(void)
{
    g_autoptr(VsManifest) m = vs_manifest_new();
    VsManifestDomain *a = vs_manifest_add_domain(m, "a"), *b = vs_manifest_add_domain(m, "b");
    VsManifestDisk *disks[] = { vs_manifest_domain_add_disk(a, "vda"), vs_manifest_domain_add_disk(a, "vdb"),
                                vs_manifest_domain_add_disk(b, "vda") };
    g_autoptr(GString) seen = g_string_new(NULL);
    ForeachSeen f = { seen, 0 };

    vs_manifest_add_domain(m, "empty");
    for (guint i = 0; i < G_N_ELEMENTS(disks); i++) {
        for (guint k = 0; k < (i == 1 ? 1u : 2u); k++) {
            VsChunkRef r = { .offset = k * 65536, .length = 65536 };

            r.digest.bytes[0] = (uint8_t)(i * 2 + k + 1);
            g_array_append_val(disks[i]->chunks, r);
        }
    }
    g_assert_true(vs_manifest_foreach_chunk(m, foreach_note, &f));
    g_assert_cmpstr(seen->str, ==, "a/vda@0 a/vda@65536 a/vdb@0 b/vda@0 b/vda@65536 ");

    g_string_truncate(seen, 0);
    f.stop_after = 3;
    g_assert_false(vs_manifest_foreach_chunk(m, foreach_note, &f));
    g_assert_cmpstr(seen->str, ==, "a/vda@0 a/vda@65536 a/vdb@0 ");
}

typedef struct {
    const char *from, *to;     /* edit: replace the first FROM with TO */
    VsErrorCode code;
    const char *message;       /* expected after "manifest: test.json: " */
} BadCase;

static void
test_strict(void)
{
    g_autoptr(VsManifest) m = sample();
    g_autofree char *good = vs_manifest_to_json(m);
    g_autofree char *hex_a_up = g_ascii_strup(hex_a, -1);
    g_autofree char *chunk0 = g_strdup_printf("[0, 65536, \"%s\"]", hex_a);
    g_autofree char *chunk0_up = g_strdup_printf("[0, 65536, \"%s\"]", hex_a_up);
    g_autofree char *chunk0_odd = g_strdup_printf("[4096, 65536, \"%s\"]", hex_a);
    g_autofree char *chunk0_late = g_strdup_printf("[196608, 100, \"%s\"]", hex_a);
    g_autofree char *chunk0_short = g_strdup_printf("[0, 100, \"%s\"]", hex_a);
    g_autofree char *chunk0_two = g_strdup_printf("[0, 65536, \"%s\", 1]", hex_a);
    g_autofree char *www = g_strnfill(REPO_TEST_LONG_NAME, 'w');
    g_autofree char *long_name = g_strdup_printf("\"name\": \"%s\"", www);
    const BadCase cases[] = {
        { "{\n", "[\n", VS_ERROR_FAILED, "not valid JSON: " },
        { "\"format\": \"virtsnap-manifest\"", "\"format\": \"virtsnap-other\"", VS_ERROR_FAILED,
          "format: \"virtsnap-other\" is not \"virtsnap-manifest\"" },
        { "\"version\": 1", "\"version\": 2", VS_ERROR_UNSUPPORTED,
          "version: format version 2 is newer than this virtsnap supports (1); upgrade virtsnap to read it" },
        { "\"version\": 1", "\"version\": \"1\"", VS_ERROR_FAILED, "version: expected a non-negative integer" },
        { "\"hostname\": ", "\"hostname2\": ", VS_ERROR_FAILED, "hostname2: unknown member" },
        { "\"id\": \"20261123T141600Z-3f9a2c\"", "\"id\": \"../etc\"", VS_ERROR_FAILED,
          "id: \"../etc\" is not 1 to 128 letters, digits, - and _" },
        { "\"chunk_size\": 65536", "\"chunk_size\": 65537", VS_ERROR_FAILED,
          "chunk_size: 65537 is not a power of two from 4096 to 16777216" },
        { "\"started\": \"2026-11-23T14:16:00.123456Z\"", "\"started\": \"yesterday\"", VS_ERROR_FAILED,
          "started: \"yesterday\" is not an ISO 8601 time with a time zone (2026-11-23T14:16:00Z)" },
        { "\"group_freeze_ms\": 1234", "\"group_freeze_ms\": -5", VS_ERROR_FAILED,
          "group_freeze_ms: expected milliseconds (a non-negative integer) or null" },
        { "\"consistency\": \"quiesced\"", "\"consistency\": \"maybe\"", VS_ERROR_FAILED,
          "domains[0].consistency: \"maybe\" is not \"quiesced\" or \"crash\"" },
        { "\"name\": \"web1\"", "\"name\": 7", VS_ERROR_FAILED, "domains[0].name: expected a string" },
        { "\"uuid\": \"2f8a", "\"uuid2\": \"2f8a", VS_ERROR_FAILED, "domains[0].uuid2: unknown member" },
        { "\"virtual_size\": 196708", "\"virtual_size\": 1.5", VS_ERROR_FAILED,
          "domains[0].disks[0].virtual_size: expected a non-negative integer" },
        { "\"virtual_size\": 196708", "\"virtual_size\": 196608", VS_ERROR_FAILED,
          "domains[0].disks[0].chunks[1]: chunk ends beyond virtual_size (offset 196608, length 100, "
          "chunk_size 65536)" },
        { "\"target\": \"vdb\"", "\"target\": \"vda\"", VS_ERROR_FAILED,
          "domains[0].disks[1].target: disk \"vda\" appears twice" },
        { "\"format\": \"qcow2\",\n          \"virtual_size\"", "\"format\": null,\n          \"virtual_size\"",
          VS_ERROR_FAILED, "domains[0].disks[0].format: expected a string" },
        { "{\"path\": \"/var/lib/libvirt/images/base.raw\", \"format\": \"raw\"}",
          "{\"path\": \"/var/lib/libvirt/images/base.raw\"}", VS_ERROR_FAILED,
          "domains[0].disks[0].chain[1].format: missing" },
        { "\"chain\": [", "\"chain\": {\"a\": [", VS_ERROR_FAILED, "not valid JSON: " },
        { "\"chain\": [\n", "\"chain\": [\n            7,\n", VS_ERROR_FAILED,
          "domains[0].disks[0].chain[0]: expected an object" },
        { chunk0, chunk0_up, VS_ERROR_FAILED,
          "domains[0].disks[0].chunks[0]: expected [offset, length, \"64 lowercase hex digits of SHA-256\"]" },
        { chunk0, chunk0_two, VS_ERROR_FAILED,
          "domains[0].disks[0].chunks[0]: expected [offset, length, \"64 lowercase hex digits of SHA-256\"]" },
        { chunk0, chunk0_odd, VS_ERROR_FAILED,
          "domains[0].disks[0].chunks[0]: offset is not a multiple of chunk_size (offset 4096, length 65536, "
          "chunk_size 65536)" },
        { chunk0, chunk0_late, VS_ERROR_FAILED,
          "domains[0].disks[0].chunks[1]: offsets are not ascending (offset 196608, length 100, chunk_size 65536)" },
        { chunk0, chunk0_short, VS_ERROR_FAILED,
          "domains[0].disks[0].chunks[0]: a short chunk that is not the last of the disk (offset 0, length 100, "
          "chunk_size 65536)" },
        { "\"bytes_stored\": 4242,\n", "", VS_ERROR_FAILED, "domains[0].disks[0].bytes_stored: missing" },
        /* Names that become file names, paths that restore writes to. */
        { "\"name\": \"web1\"", "\"name\": \"../../victim/evil\"", VS_ERROR_FAILED,
          "domains[0].name: \"../../victim/evil\" contains \"/\"" },
        { "\"name\": \"web1\"", "\"name\": \"..\"", VS_ERROR_FAILED, "domains[0].name: \"..\" is \".\" or \"..\"" },
        { "\"name\": \"web1\"", "\"name\": \"we\\u0001b\\n1\"", VS_ERROR_FAILED,
          "domains[0].name: \"we\\001b\\n1\" contains a control character" },
        { "\"name\": \"web1\"", long_name, VS_ERROR_FAILED, "domains[0].name: \"www" },
        { "\"uuid\": \"2f8a9d3e", "\"uuid\": \"../2f8a9d3e", VS_ERROR_FAILED,
          "domains[0].uuid: \"../2f8a9d3e-4b1c-4e6f-9a7b-1c2d3e4f5a6b\" is not a UUID (32 hex digits and dashes)" },
        { "\"target\": \"vdb\"", "\"target\": \"../x\"", VS_ERROR_FAILED,
          "domains[0].disks[1].target: \"../x\" is not 1 to 32 letters, digits, \"_\", \"-\" and \".\", starting "
          "with a letter or digit" },
        { "\"format\": \"qcow2\",\n          \"virtual_size\"", "\"format\": \"qcow2/../x\",\n          \"virtual_size\"",
          VS_ERROR_FAILED, "domains[0].disks[0].format: \"qcow2/../x\" is not 1 to 16 letters, digits" },
        { "\"source\": \"/var/lib/libvirt/images/web1.qcow2\"", "\"source\": \"/var/lib/../../etc/shadow\"",
          VS_ERROR_FAILED, "domains[0].disks[0].source: \"/var/lib/../../etc/shadow\" has a \"..\" component" },
        { "\"path\": \"/var/lib/libvirt/images/base.raw\"", "\"path\": \"../base.raw\"", VS_ERROR_FAILED,
          "domains[0].disks[0].chain[1].path: \"../base.raw\" has a \"..\" component" },
        { "\"format\": \"raw\"}", "\"format\": \"r w\"}", VS_ERROR_FAILED,
          "domains[0].disks[0].chain[1].format: \"r w\" is not 1 to 16 letters" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        const char *at = strstr(good, cases[i].from);
        g_autoptr(GString) bad = g_string_new(good);
        g_autoptr(GError) err = NULL;
        g_autoptr(VsManifest) parsed = NULL;
        g_autofree char *expect = g_strdup_printf("manifest: test.json: %s", cases[i].message);

        g_test_message("case %zu: %s", i, cases[i].message);
        g_assert_nonnull(at);
        g_string_erase(bad, at - good, (gssize)strlen(cases[i].from));
        g_string_insert(bad, at - good, cases[i].to);
        parsed = vs_manifest_from_json(bad->str, "test.json", &err);
        g_assert_null(parsed);
        g_assert_error(err, VS_ERROR, (int)cases[i].code);
        g_assert_true(g_str_has_prefix(err->message, expect));
    }
}

/* The fuzz target's seeds (tests/fuzz/corpus-manifest): every good-* parses,
 * every bad-* (hostile names and paths in each field that becomes one) is
 * refused with an error naming the file. */
static void
test_corpus(void)
{
    g_autofree char *dir = g_build_filename(g_getenv("VS_REPO_TEST_SRCDIR"), "..", "..", "fuzz",
                                            "corpus-manifest", NULL);
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    const char *name;
    guint good = 0, bad = 0;

    g_assert_nonnull(d);
    while ((name = g_dir_read_name(d))) {
        g_autofree char *file = g_build_filename(dir, name, NULL), *text = NULL;
        g_autoptr(GError) err = NULL;
        g_autoptr(VsManifest) m = NULL;

        if (!g_str_has_suffix(name, ".json"))
            continue;
        g_assert_true(g_file_get_contents(file, &text, NULL, NULL));
        m = vs_manifest_from_json(text, name, &err);
        g_test_message("%s: %s", name, err ? err->message : "parsed");
        if (g_str_has_prefix(name, "good-") || !strcmp(name, "good.json")) {
            g_assert_no_error(err);
            good++;
        } else {
            g_assert_true(g_str_has_prefix(name, "bad-"));
            g_assert_null(m);
            g_assert_true(g_str_has_prefix(err->message, "manifest: "));
            g_assert_nonnull(strstr(err->message, name));
            bad++;
        }
    }
    g_assert_cmpuint(good, >=, 3);
    g_assert_cmpuint(bad, >=, 20);
}

/* The storage half: a snapshot-only disk, its snapshot record, the domain's
 * pools and time on overlays survive a round trip; a manifest without them
 * still loads; and a hostile record is refused, naming the field. */
static VsManifest *
storage_sample(void)
{
    VsManifest *m = sample();
    VsManifestDomain *d = g_ptr_array_index(m->domains, 0);
    VsManifestDisk *k2 = vs_manifest_find_disk(d, "vdb");
    VsManifestSnapshot *sn = vs_manifest_snapshot_new();

    sn->provider = g_strdup("reflink");
    sn->handle = g_strdup("virtsnap-20261123T141600Z-3f9a2c-vdb");
    sn->kind = g_strdup("file");
    sn->path = g_strdup("/var/lib/libvirt/images/web1-b.raw");
    sn->snapshot_dir = g_strdup("/var/lib/libvirt/images");
    sn->pool = g_strdup("default");
    sn->volume = g_strdup("web1-b.raw");
    sn->size = 4096;
    k2->snapshot = sn;
    k2->in_repo = false;
    d->overlay_ms = 77;
    vs_manifest_domain_add_pool(d, "default", "<pool type='dir'>\n  <name>default</name>\n</pool>\n");
    return m;
}

static void
test_storage(void)
{
    g_autoptr(VsManifest) m = storage_sample();
    g_autoptr(GError) err = NULL;
    g_autofree char *json = vs_manifest_to_json(m), *json2 = NULL;
    g_autoptr(VsManifest) back = vs_manifest_from_json(json, "s.json", &err);
    g_autoptr(VsManifest) plain = sample();
    g_autofree char *plain_json = vs_manifest_to_json(plain);
    VsManifestDomain *d;
    VsManifestDisk *k;

    g_assert_no_error(err);
    json2 = vs_manifest_to_json(back);
    g_assert_cmpstr(json, ==, json2);
    d = vs_manifest_find_domain(back, "web1");
    g_assert_cmpint(d->overlay_ms, ==, 77);
    g_assert_cmpuint(d->pools->len, ==, 1);
    g_assert_nonnull(strstr(vs_manifest_domain_find_pool(d, "default")->xml, "<name>default</name>"));
    k = vs_manifest_find_disk(d, "vdb");
    g_assert_false(k->in_repo);
    g_assert_cmpstr(k->snapshot->handle, ==, "virtsnap-20261123T141600Z-3f9a2c-vdb");
    g_assert_cmpstr(k->snapshot->snapshot_dir, ==, "/var/lib/libvirt/images");
    g_assert_cmpint(k->snapshot->iscsi_lun, ==, -1);
    g_assert_cmpuint(k->snapshot->size, ==, 4096);
    g_assert_true(vs_manifest_find_disk(d, "vda")->in_repo);
    g_assert_null(vs_manifest_find_disk(d, "vda")->snapshot);
    /* without storage records, none are written: older manifests look the same */
    g_assert_null(strstr(plain_json, "in_repo"));
    g_assert_null(strstr(plain_json, "pools"));
    g_assert_null(strstr(plain_json, "overlay_ms"));

    static const struct { const char *from, *to, *message; } cases[] = {
        { "\"handle\": \"virtsnap-", "\"handle\": \"../", "domains[0].disks[1].snapshot.handle: \"../" },
        { "\"handle\": \"virtsnap-", "\"handle\": \"mine-", "domains[0].disks[1].snapshot.handle: \"mine-"
          "20261123T141600Z-3f9a2c-vdb\" does not start with \"virtsnap-\"" },
        { "\"provider\": \"reflink\"", "\"provider\": \"zfs\"",
          "domains[0].disks[1].snapshot.provider: \"zfs\" is not reflink, btrfs, rbd or hook" },
        { "\"snapshot_dir\": \"/var/lib/libvirt/images\"", "\"snapshot_dir\": \"/var/lib/../../etc\"",
          "domains[0].disks[1].snapshot.snapshot_dir: \"/var/lib/../../etc\" has a \"..\" component" },
        { "\"snapshot_dir\": \"/var/lib/libvirt/images\"", "\"snapshot_dir\": \"images\"",
          "domains[0].disks[1].snapshot.snapshot_dir: \"images\" is not an absolute path" },
        { "\"path\": \"/var/lib/libvirt/images/web1-b.raw\"", "\"path\": \"/x\\ny\"",
          "domains[0].disks[1].snapshot.path: \"/x\\ny\" has a control character" },
        { "\"in_repo\": false", "\"in_repo\": 0", "domains[0].disks[1].in_repo: expected true or false" },
        { "\"in_repo\": false,\n          \"snapshot\": {", "\"in_repo\": false,\n          \"snapshot2\": {",
          "domains[0].disks[1].snapshot2: unknown member" },
        { "\"pool\": \"default\"", "\"pool\": \"a/b\"", "domains[0].disks[1].snapshot.pool: \"a/b\" contains" },
        { "{\"name\": \"default\"", "{\"name\": \"..\"", "domains[0].pools[0].name: \"..\"" },
        { "\"overlay_ms\": 77", "\"overlay_ms\": -3", "domains[0].overlay_ms: expected milliseconds" },
        { "\"size\": 4096", "\"size\": \"big\"", "domains[0].disks[1].snapshot.size: expected a non-negative" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        const char *at = strstr(json, cases[i].from);
        g_autoptr(GString) bad = g_string_new(json);
        g_autoptr(GError) e = NULL;
        g_autoptr(VsManifest) parsed = NULL;
        g_autofree char *expect = g_strdup_printf("manifest: t.json: %s", cases[i].message);

        g_test_message("case %zu: %s", i, cases[i].message);
        g_assert_nonnull(at);
        g_string_erase(bad, at - json, (gssize)strlen(cases[i].from));
        g_string_insert(bad, at - json, cases[i].to);
        parsed = vs_manifest_from_json(bad->str, "t.json", &e);
        g_assert_null(parsed);
        g_assert_nonnull(e);
        if (!g_str_has_prefix(e->message, expect))
            g_error("got: %s", e->message);
    }
    /* a snapshot-only disk with chunks, or without its snapshot: refused */
    {
        VsManifestDisk *k2 = vs_manifest_find_disk(g_ptr_array_index(m->domains, 0), "vdb");
        g_autofree char *j = NULL;
        g_autoptr(VsManifest) p = NULL;
        g_autoptr(GError) e = NULL;

        g_clear_pointer(&k2->snapshot, vs_manifest_snapshot_free);
        j = vs_manifest_to_json(m);
        p = vs_manifest_from_json(j, "t.json", &e);
        g_assert_null(p);
        g_assert_nonnull(strstr(e->message, "in_repo: false, but the disk has no snapshot"));
    }
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/manifest/round-trip", test_round_trip);
    g_test_add_func("/manifest/new", test_new);
    g_test_add_func("/manifest/foreach-chunk", test_foreach_chunk);
    g_test_add_func("/manifest/strict", test_strict);
    g_test_add_func("/manifest/corpus", test_corpus);
    g_test_add_func("/manifest/storage", test_storage);
    return g_test_run();
}
