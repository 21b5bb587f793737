/*
 * bcryptprimitives.dll for Wine 8: exports ProcessPrng only.
 *
 * Rust's std for Windows (1.78 and later) gets its random bytes (HashMap
 * seeds) from ProcessPrng in bcryptprimitives.dll. Windows 10 and later ship
 * that DLL; Wine 8 (Debian 12's) does not, so every Rust .exe fails to start
 * under it. This stand-in fills the buffer from RtlGenRandom
 * (SystemFunction036 in advapi32), which Wine does have.
 *
 * Built by .ci/windows-toolchain.sh into target/wine/; tools/wine/runner.sh
 * puts a copy beside each .exe it runs. Not used on real Windows.
 */
#include <windows.h>

/* RtlGenRandom: declared by hand, as ntsecapi.h names it only as a macro. */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE pbData, SIZE_T cbData)
{
    /* RtlGenRandom takes a ULONG length: feed it in pieces. */
    while (cbData > 0) {
        ULONG chunk = cbData > 0x10000000u ? 0x10000000u : (ULONG)cbData;
        if (!SystemFunction036(pbData, chunk))
            return FALSE;
        pbData += chunk;
        cbData -= chunk;
    }
    /* Windows documents that ProcessPrng always returns TRUE. */
    return TRUE;
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    (void)instance;
    (void)reason;
    (void)reserved;
    return TRUE;
}
