/* forward_profile.c — the profiles forward.c can speak: see forward_profile.h. */
#include "forward_profile.h"

#include "forward_body.h"
#include "forward_outcome.h"

static const struct forward_profile gridbridge_protobuf = {
	.name = "gridbridge",
	.format = "protobuf",
	.content_type = "Content-Type: application/x-protobuf",
	.build_body = forward_body_protobuf,
	.batch_key = forward_batch_key,
	.classify = forward_classify,
};

static const struct forward_profile gridbridge_json = {
	.name = "gridbridge",
	.format = "json",
	.content_type = "Content-Type: application/json",
	.build_body = forward_body_json,
	.batch_key = forward_batch_key,
	.classify = forward_classify,
};

const struct forward_profile *
forward_profile_gridbridge(bool json)
{
	return json ? &gridbridge_json : &gridbridge_protobuf;
}
