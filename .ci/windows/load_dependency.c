/* Proves the CI's sensor works: loads the DLL named by its argument with LoadLibraryA, which
 * runs its DllMain. .ci/platforms runs it on dependency.dll and expects DllMain's mark file,
 * so that the mark's absence after demo-app's runs means the host never loaded the DLL. */
#include <windows.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: load_dependency <dll>\n");
        return 2;
    }
    if (LoadLibraryA(argv[1]) == NULL) {
        fprintf(stderr, "LoadLibraryA(%s) failed: %lu\n", argv[1], GetLastError());
        return 1;
    }
    return 0;
}
