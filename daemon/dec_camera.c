/* dec_camera.c — placeholder until the decoders land. */
#include "decode.h"

int
decode_camera_alarm(const struct decode_in *in, struct decode_out *out)
{
	(void)in;
	return decode_reject(out, "unsupported:decoder");
}

int
decode_peephole(const struct decode_in *in, struct decode_out *out)
{
	(void)in;
	return decode_reject(out, "unsupported:decoder");
}

int
decode_gateway(const struct decode_in *in, struct decode_out *out)
{
	(void)in;
	return decode_reject(out, "unsupported:decoder");
}
