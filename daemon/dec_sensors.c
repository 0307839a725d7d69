/* dec_sensors.c — placeholder until the decoders land. */
#include "decode.h"

int
decode_z2m_device(const struct decode_in *in, struct decode_out *out)
{
	(void)in;
	return decode_reject(out, "unsupported:decoder");
}

int
decode_z2m_availability(const struct decode_in *in, struct decode_out *out)
{
	(void)in;
	return decode_reject(out, "unsupported:decoder");
}

int
decode_z2m_bridge(const struct decode_in *in, struct decode_out *out)
{
	(void)in;
	return decode_reject(out, "unsupported:decoder");
}

int
decode_shelly_sensor(const struct decode_in *in, struct decode_out *out)
{
	(void)in;
	return decode_reject(out, "unsupported:decoder");
}

int
decode_shelly_online(const struct decode_in *in, struct decode_out *out)
{
	(void)in;
	return decode_reject(out, "unsupported:decoder");
}

int
decode_tasmota_lwt(const struct decode_in *in, struct decode_out *out)
{
	(void)in;
	return decode_reject(out, "unsupported:decoder");
}
