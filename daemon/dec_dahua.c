/* dec_dahua.c — placeholder until the decoder lands. */
#include "decode.h"

int
decode_dahua(const struct decode_in *in, struct decode_out *out)
{
	(void)in;
	return decode_reject(out, "unsupported:decoder");
}
