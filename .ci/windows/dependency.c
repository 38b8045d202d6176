/* A DLL that is not a plugin: it stands for a dependency DLL shipped in the plugins folder next
 * to the plugins that link it. It has no abi_stable root symbol, so the host must list it as
 * "not a plugin" from its bytes, without loading it, and not count it as a failure. Loading it
 * would be visible: DllMain writes a file named by the environment variable
 * NATIVE_PLUGINS_CI_DLLMAIN_MARK, which the CI script checks is never created. */
#include <windows.h>
#include <stdio.h>

__declspec(dllexport) int dependency_answer(void)
{
    return 42;
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    (void)instance;
    (void)reserved;
    if (reason == DLL_PROCESS_ATTACH) {
        char path[MAX_PATH];
        DWORD n = GetEnvironmentVariableA("NATIVE_PLUGINS_CI_DLLMAIN_MARK", path, sizeof path);
        if (n > 0 && n < sizeof path) {
            FILE *mark = fopen(path, "w");
            if (mark) {
                fputs("DllMain of the dependency DLL ran\n", mark);
                fclose(mark);
            }
        }
    }
    return TRUE;
}
