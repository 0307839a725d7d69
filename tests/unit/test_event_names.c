/* Unit tests for event_names.c: the names of class, type and severity. */
#include "event_names.h"
#include "t.h"

int
main(void)
{
	Gridbridge__V1__DeviceClass c;
	Gridbridge__V1__EventType t;
	Gridbridge__V1__Severity s;

	T_STREQ(event_class_name(GRIDBRIDGE__V1__DEVICE_CLASS__DEVICE_CLASS_ACCESS_GATE),
	    "access_gate");
	T_STREQ(event_class_name(GRIDBRIDGE__V1__DEVICE_CLASS__DEVICE_CLASS_GATEWAY), "gateway");
	T_STREQ(event_class_name(GRIDBRIDGE__V1__DEVICE_CLASS__DEVICE_CLASS_UNSPECIFIED),
	    "unspecified");
	T_STREQ(event_class_name((Gridbridge__V1__DeviceClass)99), "unspecified");
	T_STREQ(event_type_name(GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_PERSON_PASSAGE),
	    "person_passage");
	T_STREQ(event_type_name(GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_WELFARE_ALERT),
	    "welfare_alert");
	T_STREQ(event_type_name((Gridbridge__V1__EventType)-1), "unspecified");
	T_STREQ(event_severity_name(GRIDBRIDGE__V1__SEVERITY__SEVERITY_CRITICAL), "critical");
	T_STREQ(event_severity_name(GRIDBRIDGE__V1__SEVERITY__SEVERITY_UNSPECIFIED),
	    "unspecified");

	T_CHECK(event_class_by_name("door_sensor", &c) &&
	    c == GRIDBRIDGE__V1__DEVICE_CLASS__DEVICE_CLASS_DOOR_SENSOR);
	T_CHECK(event_type_by_name("camera_alarm", &t) &&
	    t == GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_CAMERA_ALARM);
	T_CHECK(event_severity_by_name("warning", &s) &&
	    s == GRIDBRIDGE__V1__SEVERITY__SEVERITY_WARNING);
	/* never the unspecified value, only lower case, whole names */
	T_CHECK(!event_class_by_name("unspecified", &c));
	T_CHECK(!event_type_by_name("unspecified", &t));
	T_CHECK(!event_severity_by_name("unspecified", &s));
	T_CHECK(!event_class_by_name("Camera", &c));
	T_CHECK(!event_class_by_name("DEVICE_CLASS_CAMERA", &c));
	T_CHECK(!event_type_by_name("camera_alar", &t));
	T_CHECK(!event_severity_by_name("", &s));

	/* every value round-trips */
	for (unsigned i = 1; i < gridbridge__v1__event_type__descriptor.n_values; i++) {
		int v = gridbridge__v1__event_type__descriptor.values[i].value;
		T_CHECK(event_type_by_name(event_type_name((Gridbridge__V1__EventType)v), &t) &&
		    (int)t == v);
	}
	return t_done();
}
