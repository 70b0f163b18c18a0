/*
 * Test-only stand-in for Windows' bcryptprimitives.dll, for running the
 * exporter under Wine 8 (Debian 12), which lacks it. Rust's standard library
 * imports ProcessPrng from it for its random numbers (HashMap seeds); here
 * it forwards to RtlGenRandom (advapi32's SystemFunction036), which Wine has.
 * Built and placed next to the .exe by tests/windows-wine.sh; never shipped.
 */
#include <windows.h>
#include <ntsecapi.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    /* RtlGenRandom takes a 32-bit length: fill in chunks. */
    while (length > 0) {
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!RtlGenRandom(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
