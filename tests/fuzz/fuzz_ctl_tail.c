/* Fuzz target: what gridbridgectl tail reads from the database, a
 * notification's payload (anyone may NOTIFY the channel) and a snapshot.
 * A payload that parses formats back to one that parses the same; a
 * snapshot that parses sees what it must: everything before xmin, none
 * of its running transactions, nothing from xmax on. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "store_ctl.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	struct store_ctl_note n, again;
	struct store_ctl_snapshot snap;
	char text[128];

	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (store_ctl_note_parse(s, &n) == 0) {
		snprintf(text, sizeof(text), "%" PRIu64 " %" PRId64 " %" PRId64 " %" PRId64 " %"
		    PRId64, n.txid, n.recv_first, n.recv_last, n.time_first, n.time_last);
		if (store_ctl_note_parse(text, &again) != 0 || memcmp(&n, &again, sizeof(n)) != 0 ||
		    n.recv_first > n.recv_last || n.time_first > n.time_last)
			abort();
	}
	if (store_ctl_snapshot_parse(s, &snap) == 0) {
		if (snap.xmin > snap.xmax || (snap.nxip > 0) != (snap.xip != NULL))
			abort();
		if (snap.xmin > 0 && !store_ctl_snapshot_visible(&snap, snap.xmin - 1))
			abort();
		if (store_ctl_snapshot_visible(&snap, snap.xmax))
			abort();
		for (size_t i = 0; i < snap.nxip; i++)
			if (store_ctl_snapshot_visible(&snap, snap.xip[i]))
				abort();
		store_ctl_snapshot_clear(&snap);
	}
	free(s);
	return 0;
}
