/* Waits until nothing executes the file behind descriptor argv[1] (the kernel refuses to
 * open a running executable for writing), then writes its first byte back unchanged: proof
 * that it could have written anything. Reports to /report in the container. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    char path[64], target[256] = "";
    const char *what = "never opened";
    int err = 0;
    if (argc < 2)
        return 2;
    snprintf(path, sizeof path, "/proc/self/fd/%s", argv[1]);
    if (readlink(path, target, sizeof target - 1) < 0)
        strcpy(target, "?");
    for (int i = 0; i < 1000; i++) { /* 20 s */
        int w = open(path, O_WRONLY);
        if (w >= 0) {
            int r = open(path, O_RDONLY);
            char c = 0;
            if (r >= 0 && pread(r, &c, 1, 0) == 1 && pwrite(w, &c, 1, 0) == 1) {
                what = "written";
                err = 0;
            } else {
                what = "write refused";
                err = errno;
            }
            break;
        }
        err = errno;
        if (errno != ETXTBSY) {
            what = "open refused";
            break;
        }
        usleep(20000);
    }
    FILE *f = fopen("/report.tmp", "w");
    if (!f)
        return 1;
    fprintf(f, "%s: %s (%s)\n", what, strerror(err), target);
    fclose(f);
    rename("/report.tmp", "/report");
    return 0;
}
