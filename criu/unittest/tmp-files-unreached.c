/*
 * The criu functions that the objects under test (tmp-files-mock.c) link
 * to but that the tested functions never reach. Defined without criu's
 * headers (their types do not matter: they are never called); one that
 * is called aborts, so a test that strays into them fails loudly.
 */
#include <stdio.h>
#include <stdlib.h>

#define UNREACHED(name)                                                         \
	void name(void);                                                        \
	void name(void)                                                         \
	{                                                                       \
		fprintf(stderr, "tmp-files mocks: %s() is not mocked\n", #name); \
		abort();                                                        \
	}

UNREACHED(close_fds)
UNREACHED(close_image)
UNREACHED(cr_system)
UNREACHED(cr_system_userns)
UNREACHED(do_open_proc)
UNREACHED(do_pb_read_one)
UNREACHED(get_service_fd)
UNREACHED(lookup_ns_by_id)
UNREACHED(mntns_get_root_fd)
UNREACHED(open_image_at)
UNREACHED(open_image_lazy)
UNREACHED(pb_write_one)
UNREACHED(pstree_item_next)
UNREACHED(rb_insert_color)
UNREACHED(userns_uid)
UNREACHED(userns_gid)
