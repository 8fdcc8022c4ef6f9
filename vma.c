/* vma.c — placeholder until the CLI lands: prints the version. */
#include <stdio.h>

#include "vma.h"

int main(void)
{
    printf("vma %s\n", VMABACKUP_VERSION);
    return 0;
}
