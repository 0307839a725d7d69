/* fuzz.h — the libFuzzer entry point every fuzz target defines. Built with
 * clang -fsanitize=fuzzer for real fuzzing, or with driver.c (any compiler)
 * to replay a corpus and run a short mutation pass in the test suite. */
#ifndef GRIDBRIDGE_FUZZ_H
#define GRIDBRIDGE_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
