/* mergetest MODE: anonymous mmap merge/neighbour-reuse probes.
 *  0: nothing
 *  1: a=mmap(3p) write a; b=mmap(34p) write b; munmap b
 *  2: a=mmap(3p) write a; b=mmap(512p = 2 MiB) write b
 *  3: a=mmap(3p) no write; b=mmap(34p) write b; write a
 *  4: a=mmap(2p) write a; b=mmap(9p, MAP_STACK) right after a, write b's top word
 *  5: as 4 without MAP_STACK
 * prints the maps of the probe region on stdout */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <fcntl.h>
#define P 4096UL
static char buf[65536];
static void maps(unsigned long lo, unsigned long hi)
{
	int fd = open("/proc/self/maps", O_RDONLY);
	long n = read(fd, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = 0;
	close(fd);
	for (char *l = strtok(buf, "\n"); l; l = strtok(NULL, "\n")) {
		unsigned long s = strtoul(l, NULL, 16);
		if (s + 64 * P * 16 >= lo && s <= hi)
			printf("%s\n", l);
	}
}
static char *map(unsigned long pages)
{
	return mmap(NULL, pages * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}
int main(int argc, char **argv)
{
	int mode = atoi(argv[1]);
	char *a, *b;
	switch (mode) {
	case 0:
		break;
	case 1:
		a = map(3); a[0] = 1; b = map(34); b[0] = 1;
		printf("a=%p b=%p\n", a, b); maps((unsigned long)a, (unsigned long)b + 34 * P);
		munmap(b, 34 * P);
		break;
	case 2:
		a = map(3); a[0] = 1; b = map(512); b[0] = 1;
		printf("a=%p b=%p\n", a, b); maps((unsigned long)a, (unsigned long)b + 512 * P);
		break;
	case 3:
		a = map(3); b = map(34); b[0] = 1; a[0] = 1;
		printf("a=%p b=%p\n", a, b); maps((unsigned long)a, (unsigned long)b + 34 * P);
		break;
	case 4:
	case 5:
		a = map(2); a[0] = 1;
		b = mmap(a + 2 * P, 9 * P, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | (mode == 4 ? MAP_STACK : 0), -1, 0);
		if (b != a + 2 * P) { perror("mmap"); return 1; }
		b[9 * P - 8] = 1;
		printf("a=%p b=%p\n", a, b); maps((unsigned long)a, (unsigned long)b + 9 * P);
		munmap(b, 9 * P);
		break;
	}
	fflush(stdout);
	return 0;
}
