// Fixture for internal/symbolize tests: functions with known names and
// marker comments on known lines. The tests build it with gcc at -O0.
#include <fcntl.h>
#include <unistd.h>

static inline __attribute__((always_inline)) int config_flags(int mode)
{
	return mode | O_CLOEXEC; /* MARK inline body */
}

__attribute__((noinline)) int open_config(const char *path)
{ /* MARK open_config */
	int flags = config_flags(O_RDONLY); /* MARK inline call */
	return open(path, flags); /* MARK open call */
}

__attribute__((noinline)) void load_settings(const char *path)
{ /* MARK load_settings */
	open_config(path); /* MARK open_config call */
	write(1, "loaded\n", 7);
}

int main(int argc, char **argv)
{
	char c;

	load_settings(argc > 1 ? argv[1] : "/etc/hostname");
	while (read(0, &c, 1) > 0) /* wait for the end of stdin */
		;
	return 0;
}
