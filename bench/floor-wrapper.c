/* The floor of benchmark case b: a static wrapper that takes the patched
 * zsh's wrapper command line (SOCKET-FD PATH EXEC-PATH PREFIX NAME ARGV0
 * ARGS...) and executes EXEC-PATH at once, asking nobody. What it costs
 * over no wrapper is the extra execve alone; execgate's wrapper cannot
 * cost less. Never install it: it enforces nothing. */
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 7)
        return 126;
    execv(argv[3], &argv[6]);
    perror(argv[3]);
    return 126;
}
