/*
 * A libcriu request bigger than the default socket send buffer, with
 * upstream fields only: N irmap scan paths, then criu_check().
 * libcriu_bigreq CRIU N: prints criu_check()'s result.
 */
#include <stdio.h>
#include <stdlib.h>

#include "criu.h"

int main(int argc, char **argv)
{
	char path[96];
	int i, n, ret;

	if (argc != 3 || criu_init_opts())
		return 2;
	n = atoi(argv[2]);
	criu_set_service_binary(argv[1]);
	criu_set_log_level(1);
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "/var/tmp/an-irmap-scan-path-long-enough-to-count/%06d", i);
		if (criu_add_irmap_path(path))
			return 2;
	}
	ret = criu_check();
	printf("criu_check: %d\n", ret);
	return ret ? 1 : 0;
}
