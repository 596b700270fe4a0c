// Fixture for internal/unwind: functions whose call frame information
// exercises the rules the unwinder must handle. Built by the tests with
// gcc -O2 -fomit-frame-pointer, as a shared library (for a .plt) and as an
// executable (for _start, whose return address is undefined).
#include <alloca.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Many live values across calls: pushes of callee-saved registers, rsp-based CFA.
__attribute__((noinline)) long fix_pushes(long a, long b, long c, long d, long e)
{
	long x = a * b, y = b * c, z = c * d, w = d * e, v = e * a;
	printf("%ld\n", a);
	printf("%ld %ld\n", x, y);
	return x + y + z + w + v + atol("7");
}

// alloca makes gcc keep a frame pointer: the CFA moves to rbp.
__attribute__((noinline)) long fix_alloca(int n)
{
	char *p = alloca(n);
	memset(p, 1, n);
	printf("%s\n", p);
	return p[n / 2];
}

// A variable-length array: the same, rbp-based CFA.
__attribute__((noinline)) long fix_vla(int n)
{
	long a[n];
	for (int i = 0; i < n; i++)
		a[i] = i * 3;
	printf("%ld\n", a[n - 1]);
	return a[0] + a[n - 1];
}

// An over-aligned local: gcc realigns the stack (CFA in r10, then an expression).
__attribute__((noinline)) long fix_realign(int n)
{
	char buf[256] __attribute__((aligned(64)));
	memset(buf, n, sizeof buf);
	printf("%s\n", buf);
	return buf[n & 255];
}

// Over-aligned and alloca: gcc realigns through a DRAP register, so the CFA
// is r10 and then an expression that reads the saved r10.
__attribute__((noinline)) long fix_realign_alloca(int n)
{
	char buf[256] __attribute__((aligned(64)));
	char *p = alloca(n);
	memset(p, n, n);
	memset(buf, n, sizeof buf);
	printf("%s%s\n", buf, p);
	return buf[n & 255];
}

// A leaf with no stack use: the CIE's rule (CFA = rsp+8) holds throughout.
__attribute__((noinline)) long fix_leaf(long a)
{
	return a * 2654435761u;
}

// Early returns in a frame-pushing function: remember_state/restore_state.
__attribute__((noinline)) long fix_branches(long a, long b)
{
	if (a == 0)
		return b;
	long x = a * b;
	printf("%ld\n", x);
	if (b == 0)
		return x;
	printf("%ld\n", x + b);
	return x + fix_leaf(a);
}

long fix_entry(int n)
{
	return fix_pushes(n, 2, 3, 4, 5) + fix_alloca(n + 16) + fix_vla(n + 1) +
	       fix_realign(n) + fix_realign_alloca(n + 1) + fix_branches(n, n + 1);
}

#ifdef FIX_MAIN
int main(int argc, char **argv)
{
	(void)argv;
	return (int)fix_entry(argc);
}
#endif
