/* Stand-in for Windows' bcryptprimitives.dll, for running Rust programs under Wine 8 only.
 *
 * Rust's std (1.78 and later) gets random bytes from ProcessPrng, which Wine 8 does not export.
 * A program that imports it does not start (status 53). Placed beside the .exe, this DLL is
 * found before the system's and answers ProcessPrng with RtlGenRandom (advapi32's
 * SystemFunction036), which Wine has. See ../shared/FACTS.md. Never ship it. */
#include <windows.h>

BOOLEAN NTAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    return SystemFunction036(data, (ULONG)length);
}
