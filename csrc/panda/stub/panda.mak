# Compile-only stand-in for PANDA's panda/plugins/panda.mak (see
# README.md): just enough for `make panda-glue-check` to build both
# plugins through csrc/panda/Makefile against the stub headers, with
# warnings as errors. The shared objects are never loaded.
#
#   make -f panda.mak -f <plugin dir>/Makefile PLUGIN_NAME=... \
#       PLUGIN_SRC_ROOT=<plugins dir> STUB_DIR=... TARGET=TARGET_X86_64

GLIB_CFLAGS := $(shell pkg-config --cflags glib-2.0)
PLUGIN_TARGET_DIR = $(BUILD_DIR)
PLUGIN_OBJ_DIR = $(BUILD_DIR)/$(PLUGIN_NAME)
PLUGIN_SRC_DIR = $(PLUGIN_SRC_ROOT)/$(PLUGIN_NAME)
QEMU_CFLAGS = -O2 -g -fPIC -DNEED_CPU_H -D$(TARGET) -Wall -Wextra -Werror \
	$(GLIB_CFLAGS)
QEMU_INCLUDES = -I$(STUB_DIR) -I$(PLUGIN_SRC_DIR) -I$(PLUGIN_SRC_ROOT)
quiet-command = @$1

all: $(PLUGIN_TARGET_DIR)/panda_$(PLUGIN_NAME).so

$(PLUGIN_TARGET_DIR)/panda_%.so:
	$(CC) -shared -o $@ $^
