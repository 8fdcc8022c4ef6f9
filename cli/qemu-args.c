/*
 * qemu-args.c — `vma qemu-args [--qemu BINARY] [--force] DIR`: the QEMU arguments that
 * resume the VM of an extracted whole-VM archive (backup with vm-monitor).
 *
 * DIR is what `vma extract` made of such an archive: the disks, vmstate.bin (QEMU's
 * migration stream) and the config entry vmabackup-vmstate.conf that the backup wrote:
 *
 *   format: 1
 *   ram: 1                       the archive holds the VM's RAM and device state
 *   method: precopy
 *   qemu-version: 7.2.22         QEMU that ran the VM (query-version)
 *   qemu-package: ...            its package string (optional)
 *   runningmachine: pc-i440fx-7.2   the machine type (Proxmox's key for it)
 *   memory: 268435456            RAM in bytes
 *   cpus: 1
 *
 * A migration stream loads only into a QEMU that builds the same machine: the same
 * machine type, RAM size and CPUs, and in practice the same QEMU version (device state
 * sections differ between versions). So the local QEMU (BINARY, default
 * qemu-system-x86_64) is asked for its version (--version) and machine types
 * (-machine help), and a mismatch is refused with both sides named, before anything is
 * printed; --force prints the arguments anyway for a different version (never for a
 * machine type the binary does not have: QEMU would refuse the stream).
 *
 * Output: one line of shell-quoted words to add to the VM's original QEMU command line
 * (devices as before, disks pointing at DIR's images):
 *   -machine TYPE -m SIZE -smp N -incoming 'exec:cat DIR/vmstate.bin'
 * QEMU then loads the state at start and the guest goes on from the backup's instant.
 */
#include <getopt.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"

#define VMSTATE_CONFIG "vmabackup-vmstate.conf"

static void qemu_args_usage(FILE *out)
{
    fprintf(out,
            "Usage: vma qemu-args [--qemu BINARY] [--force] DIR\n"
            "\n"
            "Print the QEMU arguments that resume the VM whose whole-VM archive (a backup\n"
            "with its RAM state) was extracted into DIR: -machine, -m, -smp and -incoming\n"
            "with DIR/vmstate.bin. Refuses when the local QEMU is another version or lacks\n"
            "the machine type.\n"
            "\n"
            "  --qemu BINARY  the QEMU to check against (default: qemu-system-x86_64)\n"
            "  --force        print the arguments even for another QEMU version\n"
            "  -h, --help     show this help\n");
}

/* The value of "key: value" in text, or NULL (g_free). */
static char *conf_get(const char *text, const char *key)
{
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    size_t klen = strlen(key);

    for (guint i = 0; lines[i] != NULL; i++) {
        if (strncmp(lines[i], key, klen) == 0 && lines[i][klen] == ':' &&
            lines[i][klen + 1] == ' ') {
            return g_strdup(lines[i] + klen + 2);
        }
    }
    return NULL;
}

/* Run argv, its standard output (g_free) or NULL with err. */
static char *run(const char *const *argv, GError **errp)
{
    g_autofree char *out = NULL;
    g_autofree char *errout = NULL;
    int status = 0;

    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out,
                      &errout, &status, errp)) {
        return NULL;
    }
    if (!g_spawn_check_wait_status(status, errp)) {
        g_prefix_error(errp, "%s %s: ", argv[0], argv[1]);
        return NULL;
    }
    return g_steal_pointer(&out);
}

/* "7.2.22" out of "QEMU emulator version 7.2.22 (Debian ...)". */
static char *parse_version(const char *out)
{
    const char *p = strstr(out, "version ");
    if (p == NULL) {
        return NULL;
    }
    p += strlen("version ");
    size_t n = strspn(p, "0123456789.");
    return n > 0 ? g_strndup(p, n) : NULL;
}

/* Whether `-machine help` output lists machine type name (first word of a line). */
static bool has_machine(const char *out, const char *name)
{
    g_auto(GStrv) lines = g_strsplit(out, "\n", -1);

    for (guint i = 0; lines[i] != NULL; i++) {
        g_auto(GStrv) w = g_strsplit_set(g_strstrip(lines[i]), " \t", 2);
        if (w[0] != NULL && strcmp(w[0], name) == 0) {
            return true;
        }
    }
    return false;
}

static bool valid_number(const char *s)
{
    return s != NULL && s[0] != '\0' && strspn(s, "0123456789") == strlen(s) &&
           strlen(s) < 19;
}

int cli_qemu_args_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"qemu", required_argument, NULL, 'q'},
        {"force", no_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *qemu = "qemu-system-x86_64";
    bool force = false;
    int c;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'q':
            qemu = optarg;
            break;
        case 'f':
            force = true;
            break;
        case 'h':
            qemu_args_usage(stdout);
            return CLI_EXIT_OK;
        default:
            return cli_bad_option("qemu-args", c, argv);
        }
    }
    if (argc - optind != 1) {
        return cli_usage_error("qemu-args", argc - optind < 1 ? "missing DIR operand"
                                                               : "too many operands");
    }
    const char *dir = argv[optind];
    g_autofree char *conf_path = g_build_filename(dir, VMSTATE_CONFIG, NULL);
    g_autofree char *state = g_build_filename(dir, "vmstate.bin", NULL);
    g_autofree char *text = NULL;
    g_autoptr(GError) err = NULL;

    if (!g_file_get_contents(conf_path, &text, NULL, NULL)) {
        return cli_failf("qemu-args", "%s: no readable %s: not an extracted archive with "
                         "the VM's RAM state", dir, VMSTATE_CONFIG);
    }
    struct stat st;
    if (stat(state, &st) < 0 || !S_ISREG(st.st_mode)) {
        return cli_failf("qemu-args", "%s: no vmstate.bin: extract the whole archive", dir);
    }
    g_autofree char *ram = conf_get(text, "ram");
    g_autofree char *version = conf_get(text, "qemu-version");
    g_autofree char *machine = conf_get(text, "runningmachine");
    g_autofree char *memory = conf_get(text, "memory");
    g_autofree char *cpus = conf_get(text, "cpus");
    if (ram == NULL || strcmp(ram, "1") != 0) {
        return cli_failf("qemu-args", "%s: %s says the archive holds no RAM state", dir,
                         VMSTATE_CONFIG);
    }
    if (version == NULL || machine == NULL || machine[0] == '\0' || !valid_number(memory) ||
        !valid_number(cpus) || strpbrk(machine, " \t'\"\\") != NULL) {
        return cli_failf("qemu-args", "%s: %s lacks qemu-version, runningmachine, memory or "
                         "cpus, or has a malformed one", dir, VMSTATE_CONFIG);
    }

    const char *vargv[] = {qemu, "--version", NULL};
    g_autofree char *vout = run(vargv, &err);
    if (vout == NULL) {
        return cli_failf("qemu-args", "%s --version: %s", qemu, err->message);
    }
    g_autofree char *local = parse_version(vout);
    if (local == NULL) {
        return cli_failf("qemu-args", "%s --version: no version in its output", qemu);
    }
    const char *margv[] = {qemu, "-machine", "help", NULL};
    g_autofree char *mout = run(margv, &err);
    if (mout == NULL) {
        return cli_failf("qemu-args", "%s -machine help: %s", qemu, err->message);
    }
    if (!has_machine(mout, machine)) {
        return cli_failf("qemu-args", "%s: the VM state is of machine type %s (QEMU %s), "
                         "which %s (QEMU %s) does not have", dir, machine, version, qemu,
                         local);
    }
    if (strcmp(local, version) != 0 && !force) {
        return cli_failf("qemu-args", "%s: the VM state was saved by QEMU %s, %s is QEMU %s: "
                         "a migration stream loads reliably only into the QEMU version that "
                         "wrote it (use that QEMU, or --force to try)", dir, version, qemu,
                         local);
    }

    guint64 mem = g_ascii_strtoull(memory, NULL, 10);
    g_autofree char *m = (mem % (1u << 20)) == 0
                             ? g_strdup_printf("%" G_GUINT64_FORMAT "M", mem >> 20)
                             : g_strdup_printf("%" G_GUINT64_FORMAT "K", mem >> 10);
    g_autofree char *abs = g_canonicalize_filename(state, NULL);
    g_autofree char *cat_arg = g_shell_quote(abs);
    g_autofree char *incoming = g_strdup_printf("exec:cat %s", cat_arg);
    g_autofree char *q_incoming = g_shell_quote(incoming);
    g_autofree char *q_machine = g_shell_quote(machine);
    printf("-machine %s -m %s -smp %s -incoming %s\n", q_machine, m, cpus, q_incoming);
    if (!cli_stdout_flush(&err)) {
        return cli_fail("qemu-args", err);
    }
    return CLI_EXIT_OK;
}
