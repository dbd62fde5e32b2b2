/*
 * Bad input for the weights readers, through the CLI: every case is one
 * line "sambench inspect: FILE: problem" and exit status 2, never a crash
 * or a hang. Corrupt files are generated here from the fixtures or built
 * by hand (pickles are code: a file asking for anything else is refused).
 */
#include "util_test.h"
#include "util_weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Runs inspect on path; asserts exit 2, a single line naming the file, containing want. */
static void expect_bad(const char *path, const char *want)
{
    char *out = NULL;
    int rc = run_sambench(&out, "inspect %s", path);
    if (rc != 2 || !out || !strstr(out, want)) {
        fail_msg("inspect %s: exit %d, output '%s', expected exit 2 and '%s'", path, rc, out ? out : "", want);
    }
    char prefix[4200];
    snprintf(prefix, sizeof prefix, "sambench inspect: %s: ", path);
    if (strncmp(out, prefix, strlen(prefix)) != 0)
        fail_msg("message does not start with '%s': %s", prefix, out);
    char *nl = strchr(out, '\n');
    if (!nl || nl[1] != '\0')
        fail_msg("not exactly one line: %s", out);
    free(out);
}

/* A zip holding data.pkl (given) and entries data/0.. with the given bytes. */
static void zip_with(const char *path, const pbuf *pkl, int n, const void *const *data, const size_t *lens)
{
    const char *names[8];
    const void *d[8];
    size_t l[8];
    char nb[8][32];
    names[0] = "t/data.pkl";
    d[0] = pkl->data;
    l[0] = pkl->len;
    for (int i = 0; i < n; i++) {
        snprintf(nb[i], sizeof nb[i], "t/data/%d", i);
        names[i + 1] = nb[i];
        d[i + 1] = data[i];
        l[i + 1] = lens[i];
    }
    names[n + 1] = "t/version";
    d[n + 1] = "3\n";
    l[n + 1] = 2;
    write_zip(path, n + 2, names, d, l);
}

static void test_truncated_and_corrupt_zip(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = read_file(fixture_path("sam_vit_tiny.pth"), &len);
    assert_non_null(buf);
    const char *p = temp_path("trunc.pth");
    write_file(p, buf, len / 2); /* the central directory is gone */
    expect_bad(p, "truncated or corrupt zip");
    write_file(p, buf, 100); /* inside the first local header */
    expect_bad(p, "zip");
    /* a flipped byte in a storage: the zip CRC catches it */
    uint8_t *c = malloc(len);
    memcpy(c, buf, len);
    c[len / 2] ^= 0x5a;
    write_file(p, c, len);
    expect_bad(p, "CRC-32 mismatch");
    /* garbage over the central directory */
    memcpy(c, buf, len);
    memset(c + len - 400, 0xee, 370);
    write_file(p, c, len);
    expect_bad(p, "zip");
    free(c);
    free(buf);
}

static void test_entry_size_disagrees(void **state)
{
    (void)state;
    float v[4] = {1, 2, 3, 4};
    tspec t[] = {{"a", "FloatStorage", "0", 10, 0, 1, {10}, {1}}}; /* claims 10 floats, entry has 4 */
    pbuf pk = {0};
    build_state_dict_pickle(&pk, NULL, t, 1, 0);
    const void *d[1] = {v};
    size_t l[1] = {sizeof v};
    const char *p = temp_path("size.pth");
    zip_with(p, &pk, 1, d, l);
    expect_bad(p, "zip entry 't/data/0' has 16 bytes but its storage claims 10 float32 elements (40 bytes)");
    free(pk.data);
    /* a missing storage entry */
    pk = (pbuf){0};
    build_state_dict_pickle(&pk, NULL, t, 1, 0);
    zip_with(p, &pk, 0, NULL, NULL);
    expect_bad(p, "zip entry 't/data/0' is missing");
    free(pk.data);
}

static void test_pickle_ends_early_or_loops(void **state)
{
    (void)state;
    float v[3] = {1, 2, 3};
    tspec t[] = {{"a", "FloatStorage", "0", 3, 0, 1, {3}, {1}}};
    pbuf pk = {0};
    build_state_dict_pickle(&pk, NULL, t, 1, 0);
    const void *d[1] = {v};
    size_t l[1] = {sizeof v};
    const char *p = temp_path("early.pth");
    pk.len -= 1; /* no STOP */
    zip_with(p, &pk, 1, d, l);
    expect_bad(p, "pickle ends early");
    pk.len = 20; /* inside a string */
    zip_with(p, &pk, 1, d, l);
    expect_bad(p, "pickle ends early");
    free(pk.data);
    /* a dict that contains itself (memo loop): refused, no endless walk */
    static const uint8_t self[] = {0x80, 2, '}', 'q', 0, 'X', 1, 0, 0, 0, 'a', 'h', 0, 's', '.'};
    pbuf sp = {(uint8_t *)self, sizeof self, sizeof self, 0};
    zip_with(p, &sp, 0, NULL, NULL);
    expect_bad(p, "key 'a' holds a dict, not a tensor");
    /* a bank list that contains itself */
    static const uint8_t selfl[] = {0x80, 4, ']', 0x94, 'h', 0, 'a', '.'};
    const char *q = temp_path("loop.pkl");
    write_file(q, selfl, sizeof selfl);
    expect_bad(q, "bank entry 0 is a list of 1 items");
    /* memo read before written */
    static const uint8_t memo[] = {0x80, 4, 'h', 7, '.'};
    write_file(q, memo, sizeof memo);
    expect_bad(q, "memo 7 read before it was written");
    /* a huge memo index */
    static const uint8_t bigmemo[] = {0x80, 4, 'N', 'r', 0xff, 0xff, 0xff, 0x7f, '.'};
    write_file(q, bigmemo, sizeof bigmemo);
    expect_bad(q, "memo index 2147483647 out of range");
}

static void test_huge_counts(void **state)
{
    (void)state;
    float v[4] = {1, 2, 3, 4};
    const void *d[1] = {v};
    size_t l[1] = {sizeof v};
    const char *p = temp_path("huge.pth");
    /* a storage of 2^50 elements */
    tspec t1[] = {{"a", "FloatStorage", "0", INT64_C(1) << 50, 0, 1, {4}, {1}}};
    pbuf pk = {0};
    build_state_dict_pickle(&pk, NULL, t1, 1, 0);
    zip_with(p, &pk, 1, d, l);
    expect_bad(p, "storage '0' declares 1125899906842624 elements (out of range)");
    free(pk.data);
    /* 2^36 elements: in range, but the entry does not hold them */
    tspec t2[] = {{"a", "FloatStorage", "0", INT64_C(1) << 36, 0, 1, {4}, {1}}};
    pk = (pbuf){0};
    build_state_dict_pickle(&pk, NULL, t2, 1, 0);
    zip_with(p, &pk, 1, d, l);
    expect_bad(p, "has 16 bytes but its storage claims 68719476736 float32 elements");
    free(pk.data);
    /* a view far larger than its storage */
    tspec t3[] = {{"a", "FloatStorage", "0", 4, 0, 2, {1 << 19, 1 << 19}, {1 << 19, 1}}};
    pk = (pbuf){0};
    build_state_dict_pickle(&pk, NULL, t3, 1, 0);
    zip_with(p, &pk, 1, d, l);
    expect_bad(p, "exceeds its storage '0' of 4 elements");
    free(pk.data);
    tspec t4[] = {{"a", "FloatStorage", "0", 4, 0, 3, {1 << 30, 1 << 30, 1 << 30}, {0, 0, 0}}};
    pk = (pbuf){0};
    build_state_dict_pickle(&pk, NULL, t4, 1, 0);
    zip_with(p, &pk, 1, d, l);
    expect_bad(p, "tensor element count overflows");
    free(pk.data);
    /* a string longer than the file */
    static const uint8_t s[] = {0x80, 4, 0x8d, 0, 0, 0, 0, 0, 0, 0, 0x40, 'x', '.'};
    const char *q = temp_path("hugestr.pkl");
    write_file(q, s, sizeof s);
    expect_bad(q, "pickle ends early (a string of 4611686018427387904 bytes");
    /* a legacy blob whose storage declares more elements than it holds */
    size_t len;
    uint8_t *bank = read_file(fixture_path("memory_bank_list_6.pkl"), &len);
    assert_non_null(bank);
    /* first blob: ...'cpu' q\x03 M\x00\x12 (numel 4608) ... then the 8-byte count 0x1200 after the key list */
    uint8_t *m = memmem(bank, len, "cpuq\x03M\x00\x12", 8);
    assert_non_null(m);
    m[7] = 0x7f; /* the id now declares 0x7f00 elements, the count in the stream still says 0x1200 */
    const char *b = temp_path("bank_count.pkl");
    write_file(b, bank, len);
    expect_bad(b, "storage '549977024' holds 4608 elements but its id declares 32512");
    m[7] = 0x12;
    uint8_t *cnt = memmem(bank, len, "\x00\x12\x00\x00\x00\x00\x00\x00", 8);
    assert_non_null(cnt);
    cnt[5] = 0x10; /* the stream's count says 2^44 + 4608 */
    write_file(b, bank, len);
    expect_bad(b, "storage '549977024' holds 17592186049024 elements but its id declares 4608");
    free(bank);
}

static void test_unknown_dtype_opcode_global(void **state)
{
    (void)state;
    float v[4] = {1, 2, 3, 4};
    const void *d[1] = {v};
    size_t l[1] = {sizeof v};
    const char *p = temp_path("dtype.pth");
    tspec t[] = {{"a", "ComplexFloatStorage", "0", 2, 0, 1, {2}, {1}}};
    pbuf pk = {0};
    build_state_dict_pickle(&pk, NULL, t, 1, 0);
    zip_with(p, &pk, 1, d, l);
    expect_bad(p, "unknown dtype or storage type 'ComplexFloatStorage'");
    free(pk.data);
    /* unknown opcode */
    static const uint8_t op[] = {0x80, 2, '}', 0xff, '.'};
    pbuf o = {(uint8_t *)op, sizeof op, sizeof op, 0};
    zip_with(p, &o, 0, NULL, NULL);
    expect_bad(p, "unknown or disallowed opcode 0xff at byte 3");
    /* INST (protocol 0 class instantiation) is refused as an opcode */
    static const uint8_t inst[] = {0x80, 2, '(', 'i', 'o', 's', '\n', 's', 'y', 's', 't', 'e', 'm', '\n', '.'};
    pbuf in = {(uint8_t *)inst, sizeof inst, sizeof inst, 0};
    zip_with(p, &in, 0, NULL, NULL);
    expect_bad(p, "unknown or disallowed opcode 0x69");
    /* disallowed globals: GLOBAL in a checkpoint, STACK_GLOBAL in a pickle */
    static const uint8_t g[] = {0x80, 2, 'c', 'o', 's', '\n', 's', 'y', 's', 't', 'e', 'm', '\n',
                                'X', 2, 0, 0, 0, 'l', 's', 0x85, 'R', '.'};
    pbuf gp = {(uint8_t *)g, sizeof g, sizeof g, 0};
    zip_with(p, &gp, 0, NULL, NULL);
    expect_bad(p, "disallowed global 'os.system'");
    static const uint8_t sg[] = {0x80, 4, 0x8c, 8, 'b', 'u', 'i', 'l', 't', 'i', 'n', 's',
                                 0x8c, 4, 'e', 'v', 'a', 'l', 0x93, 'X', 1, 0, 0, 0, '1', 0x85, 'R', '.'};
    const char *q = temp_path("evil.pkl");
    write_file(q, sg, sizeof sg);
    expect_bad(q, "disallowed global 'builtins.eval'");
    /* an allowlisted global that is not callable */
    static const uint8_t nc[] = {0x80, 2, 'c', 't', 'o', 'r', 'c', 'h', '\n', 'F', 'l', 'o', 'a', 't', 'S', 't',
                                 'o', 'r', 'a', 'g', 'e', '\n', ')', 'R', '.'};
    write_file(q, nc, sizeof nc);
    expect_bad(q, "REDUCE refused");
}

static void test_bank_wrong_shape(void **state)
{
    (void)state;
    const char *p = temp_path("bank_shape.pkl");
    sb_error err;
    sb_bank_writer *bw;
    assert_sb_ok(err, sb_bank_writer_open(&bw, p, "cuda:0", &err));
    uint16_t mem[16 * 4 * 4] = {0};
    float feat[64] = {0};
    for (int i = 0; i < 4; i++) {
        int64_t C = i == 2 ? 8 : 16;
        assert_sb_ok(err, sb_bank_writer_add(bw, C, 4, 4, SB_DT_BF16, mem, mem, SB_DT_BF16, 0.5f, 64, SB_DT_F32,
                                             feat, &err));
    }
    assert_sb_ok(err, sb_bank_writer_close(bw, &err));
    expect_bad(p, "bank entry 2: maskmem_features has shape [1, 8, 4, 4], expected [1, 16, 4, 4] (as entry 0)");
    sb_bank *b;
    assert_int_equal(sb_bank_load(&b, p, &err), SB_ESHAPE);
    /* truncated bank */
    size_t len;
    uint8_t *buf = read_file(fixture_path("memory_bank_list_6.pkl"), &len);
    write_file(p, buf, len - 5000);
    expect_bad(p, "ends early");
    /* a checkpoint is not a bank and a bank is not a checkpoint */
    sb_weights *w;
    assert_int_equal(sb_weights_load(&w, fixture_path("memory_bank_list_6.pkl"), &err), SB_EFORMAT);
    assert_non_null(strstr(err.msg, "memory bank?"));
    assert_int_equal(sb_bank_load(&b, fixture_path("sam_vit_tiny.pth"), &err), SB_EFORMAT);
    assert_non_null(strstr(err.msg, "not a memory bank"));
    free(buf);
}

static void test_other_files(void **state)
{
    (void)state;
    const char *p = temp_path("text.pth");
    write_file(p, "hello world\n", 12);
    expect_bad(p, "unknown format");
    write_file(p, "", 0);
    expect_bad(p, "empty file");
    expect_bad(fixture_path("sam_step0.h5"), "not sambench-h5 weights");
    char *out = NULL;
    assert_int_equal(run_sambench(&out, "inspect %s", temp_path("does_not_exist.pth")), 2);
    assert_non_null(strstr(out, "No such file"));
    free(out);
    /* usage errors */
    assert_int_equal(run_sambench(&out, "inspect"), 2);
    free(out);
    assert_int_equal(run_sambench(&out, "init-random --variant vit_h --seed 1 %s", p), 2);
    assert_non_null(strstr(out, "unknown variant 'vit_h'"));
    free(out);
    assert_int_equal(run_sambench(&out, "init-random --variant samed2 --seed x %s", p), 2);
    free(out);
    assert_int_equal(run_sambench(&out, "convert %s", p), 2);
    free(out);
    assert_int_equal(run_sambench(&out, "convert %s %s", fixture_path("memory_bank_list_6.pkl"), temp_path("x.h5")), 2);
    assert_non_null(strstr(out, "sambench convert: "));
    free(out);
    assert_int_equal(run_sambench(&out, "inspect --help"), 0);
    assert_non_null(strstr(out, "usage: sambench inspect"));
    free(out);
    assert_int_equal(run_sambench(&out, "convert --help"), 0);
    free(out);
    assert_int_equal(run_sambench(&out, "init-random --help"), 0);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_truncated_and_corrupt_zip),
        cmocka_unit_test(test_entry_size_disagrees),
        cmocka_unit_test(test_pickle_ends_early_or_loops),
        cmocka_unit_test(test_huge_counts),
        cmocka_unit_test(test_unknown_dtype_opcode_global),
        cmocka_unit_test(test_bank_wrong_shape),
        cmocka_unit_test(test_other_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
