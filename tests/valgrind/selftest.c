/*
 * tests/valgrind/selftest.c — proves that `make check-valgrind` can fail: without
 * arguments it frees what it allocates; with an argument it loses a block (a definite
 * leak), which the valgrind options of run-valgrind.sh must turn into exit status 99.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    char *p = malloc(64);

    if (p == NULL) {
        return 1;
    }
    strcpy(p, "selftest");
    puts(p);
    if (argc > 1) {
        p = NULL;           /* the only pointer to the block is gone */
    }
    free(p);
    return 0;
}
