# Compile-only stand-in for PANDA's panda/plugins/panda.mak (see
# README.md): just enough for `make panda-glue-check` to build both
# plugins through csrc/panda/Makefile against the stub headers, with
# warnings as errors. The shared objects are never loaded.
#
#   make -f panda.mak -f <plugin dir>/Makefile PLUGIN_NAME=... \
#       PLUGIN_SRC_ROOT=<plugins dir> STUB_DIR=... TARGET=TARGET_X86_64
#
# Like PANDA's, it folds glib's flags into QEMU_CFLAGS (there is no
# GLIB_CFLAGS) and defines PLUGIN_MAIN for the unit named like the plugin.

PLUGIN_TARGET_DIR = $(BUILD_DIR)
PLUGIN_OBJ_DIR = $(BUILD_DIR)/$(PLUGIN_NAME)
PLUGIN_SRC_DIR = $(PLUGIN_SRC_ROOT)/$(PLUGIN_NAME)
QEMU_CFLAGS = -O2 -g -fPIC -DNEED_CPU_H -D$(TARGET) -Wall -Wextra -Werror \
	$(shell pkg-config --cflags glib-2.0)
QEMU_INCLUDES = -I$(STUB_DIR) -I$(PLUGIN_SRC_DIR) -I$(PLUGIN_SRC_ROOT)
CFLAGS += $(if $(subst $(basename $(notdir $<)),,$(PLUGIN_NAME)),,-DPLUGIN_MAIN)
quiet-command = @$1

all: $(PLUGIN_TARGET_DIR)/panda_$(PLUGIN_NAME).so

# Undefined symbols are allowed only for what PANDA's binary provides.
$(PLUGIN_TARGET_DIR)/panda_%.so:
	$(CC) -shared -o $@ $^
