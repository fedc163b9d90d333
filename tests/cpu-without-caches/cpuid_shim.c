// LD_PRELOAD shim: emulates CPUID for sites patched to ud2 (0F 0B) in a copy of libtorch_cpu.so,
// reporting no cache hierarchy (leaf 4 and 0x8000001D return zeros), as on a VM whose CPU reports none.
#define _GNU_SOURCE
#include <signal.h>
#include <ucontext.h>
#include <cpuid.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <dlfcn.h>
static struct sigaction previous;
static int zero_legacy;
static void on_sigill(int sig, siginfo_t* info, void* context) {
  ucontext_t* uc = context;
  greg_t* r = uc->uc_mcontext.gregs;
  unsigned char* ip = (unsigned char*)r[REG_RIP];
  Dl_info dl;
  if (ip[0] == 0x0f && ip[1] == 0x0b && dladdr(ip, &dl) && dl.dli_fname && strstr(dl.dli_fname, "libtorch_cpu")) {
    unsigned leaf = (unsigned)r[REG_RAX], sub = (unsigned)r[REG_RCX], a, b, c, d;
    __cpuid_count(leaf, sub, a, b, c, d);
    if (leaf == 4 || leaf == 0x8000001d || (zero_legacy && (leaf == 0x80000005 || leaf == 0x80000006))) a = b = c = d = 0;
    if (getenv("SHIM_TRACE")) fprintf(stderr, "cpuid %x/%x -> %x %x %x %x\n", leaf, sub, a, b, c, d);
    r[REG_RAX] = a; r[REG_RBX] = b; r[REG_RCX] = c; r[REG_RDX] = d; r[REG_RIP] += 2;
    return;
  }
  if (previous.sa_flags & SA_SIGINFO) previous.sa_sigaction(sig, info, context);
  else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) previous.sa_handler(sig);
  else { signal(SIGILL, SIG_DFL); raise(SIGILL); }
}
__attribute__((constructor)) static void install(void) {
  zero_legacy = getenv("SHIM_ZERO_LEGACY") != NULL;
  struct sigaction sa; memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sigill; sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigaction(SIGILL, &sa, &previous);
}
