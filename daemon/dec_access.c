/* dec_access.c — access gates of either vendor on one topic layout.
 *
 * Communities mix Hikvision and Dahua gates under the same topics
 * (sac/<community>/access/<device>/event). Dahua events carry a top-level
 * "Code" ("AccessControl"), Hikvision ISAPI events an "eventType"; the
 * payload says which decoder applies, and the record's vendor follows. */
#include <string.h>

#include "decode.h"

static bool
has_key(const struct decode_in *in, const char *quoted)
{
	return in->payload != NULL && memmem(in->payload, in->payload_len, quoted,
	    strlen(quoted)) != NULL;
}

int
decode_access(const struct decode_in *in, struct decode_out *out)
{
	enum decoder_id d = has_key(in, "\"Code\"") && !has_key(in, "\"eventType\"") ?
	    DECODER_DAHUA : DECODER_HIKVISION;

	out->ev.vendor = arena_strdup(&out->arena, decoder_vendor(d));
	return d == DECODER_DAHUA ? decode_dahua(in, out) : decode_hikvision(in, out);
}
