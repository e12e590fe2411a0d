/* /init of the guest's initramfs under `kxen boot-test`.
 *
 * Freestanding (no libc): the same source builds for x86_64 and for i686, where the
 * build host has no 32-bit libc and a 64-bit init would not run in a 32-bit guest.
 * It mounts sysfs, prints one marker line with the kernel release and Xen's view of
 * the guest (/sys/hypervisor/guest_type: PV, PVH, HVM; "none" on bare metal), then
 * powers the machine off.  The marker's token comes from /token, written per run.
 */

#if defined(__x86_64__)
#define SYS_read 0
#define SYS_write 1
#define SYS_open 2
#define SYS_close 3
#define SYS_uname 63
#define SYS_mkdir 83
#define SYS_mount 165
#define SYS_reboot 169

static long syscall3(long n, long a, long b, long c)
{
	long ret;
	__asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
	return ret;
}

static long syscall5(long n, long a, long b, long c, long d, long e)
{
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
			 : "rcx", "r11", "memory");
	return ret;
}
#elif defined(__i386__)
#define SYS_read 3
#define SYS_write 4
#define SYS_open 5
#define SYS_close 6
#define SYS_mkdir 39
#define SYS_mount 21
#define SYS_reboot 88
#define SYS_uname 122

static long syscall3(long n, long a, long b, long c)
{
	long ret;
	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(n), "b"(a), "c"(b), "d"(c) : "memory");
	return ret;
}

static long syscall5(long n, long a, long b, long c, long d, long e)
{
	long ret;
	/* ebx is reserved for PIC code: swap it in and out by hand. */
	__asm__ volatile("xchg %%ebx, %2\n\tint $0x80\n\txchg %%ebx, %2"
			 : "=a"(ret)
			 : "a"(n), "r"(a), "c"(b), "d"(c), "S"(d), "D"(e)
			 : "memory");
	return ret;
}
#else
#error "guest_init.c supports x86_64 and i386"
#endif

#define O_RDONLY 0
#define LINUX_REBOOT_MAGIC1 0xfee1dead
#define LINUX_REBOOT_MAGIC2 672274793
#define LINUX_REBOOT_CMD_POWER_OFF 0x4321fedc

struct new_utsname {
	char sysname[65], nodename[65], release[65], version[65], machine[65], domainname[65];
};

static unsigned long length(const char *text)
{
	unsigned long n = 0;
	while (text[n])
		n++;
	return n;
}

static void put(const char *text)
{
	syscall3(SYS_write, 1, (long)text, (long)length(text));
}

/* The file's first line (at most size - 1 bytes), or `fallback` when it cannot be read. */
static void first_line(const char *path, char *buffer, long size, const char *fallback)
{
	long fd = syscall3(SYS_open, (long)path, O_RDONLY, 0);
	long got = fd < 0 ? -1 : syscall3(SYS_read, fd, (long)buffer, size - 1);
	long i;

	if (fd >= 0)
		syscall3(SYS_close, fd, 0, 0);
	if (got <= 0) {
		for (i = 0; fallback[i] && i < size - 1; i++)
			buffer[i] = fallback[i];
		got = i;
	}
	buffer[got] = 0;
	for (i = 0; i < got; i++)
		if (buffer[i] == '\n')
			buffer[i] = 0;
}

void _start(void)
{
	static struct new_utsname uts;
	static char token[128], guest_type[64];

	syscall3(SYS_mkdir, (long)"/sys", 0755, 0);
	syscall5(SYS_mount, (long)"sysfs", (long)"/sys", (long)"sysfs", 0, 0);
	first_line("/token", token, sizeof(token), "no-token");
	first_line("/sys/hypervisor/guest_type", guest_type, sizeof(guest_type), "none");
	syscall3(SYS_uname, (long)&uts, 0, 0);
	put("\nkxen-boot-test ");
	put(token);
	put(" release=");
	put(uts.release);
	put(" guest_type=");
	put(guest_type);
	put("\n");
	syscall5(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_POWER_OFF, 0, 0);
	for (;;)
		syscall3(SYS_read, 0, (long)token, 1);
}
