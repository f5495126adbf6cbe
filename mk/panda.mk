# mk/panda.mk - pandagpm's PANDA host, included from the top Makefile.
#
#   make panda-plugins PANDA_PATH=/path/to/panda [PANDA_LINK=1]
#       Put the guest_plugin_manager and linjector plugins into a PANDA
#       source tree (panda/plugins/<name>/, listed in config.panda); then
#       rebuild PANDA as usual. PANDA_LINK=1 symlinks the files instead of
#       copying them, so edits here show up in PANDA's next build.
#   make panda-plugins-remove PANDA_PATH=/path/to/panda
#       Take them out again.
#   make panda-plugins-check [PANDA_PATH=/path/to/built/panda]
#       CI, after PANDA is built (make panda): build both plugins inside
#       the real tree with PANDA's own plugin rules (panda.mak) and
#       -Werror, for every target built there, check what each .so
#       exports, and dlopen() each with RTLD_NOW against that target's
#       libpanda, so a symbol PANDA does not provide fails here. The
#       plugins land where PANDA looks for them. PANDA_PATH defaults to
#       every tree named in .panda-paths (else .panda-path; both written
#       by the provisioning: targets built at different times live in
#       different trees).
#   make panda-glue-check
#       Without PANDA: compile every glue file that does not need PANDA's headers
#       with -Wall -Wextra -Werror (clang and gcc), check the public
#       headers as C and C++, type-check the PANDA-dependent files
#       against csrc/panda/stub (a compile-only stand-in for PANDA's API)
#       for every target (the real tree builds only x86_64-softmmu), and
#       build both plugins' shared objects the way PANDA does
#       (panda-plugins into a scratch tree, then csrc/panda/Makefile
#       under the stub panda.mak). Needs no PANDA, proves less than
#       panda-plugins-check.
#
# See docs/panda.md.

GPM_PANDA_PLUGINS := guest_plugin_manager linjector
GPM_PANDA_CC ?= clang-14
GPM_PANDA_CXX ?= clang++-14
GPM_PANDA_GCC ?= gcc
GPM_PANDA_GLIB = $(shell pkg-config --cflags glib-2.0)
GPM_PANDA_WARN := -Wall -Wextra -Werror
GPM_PANDA_INC := -Icsrc/panda -Icsrc/include -Icsrc/core -Icsrc
# The glue that builds without PANDA (linked into tests/c/test_panda_api).
GPM_PANDA_FREE := csrc/panda/gpm_panda_api.c csrc/panda/gpm_panda_mem.c \
	csrc/panda/osi_snapshot.c
# The glue that needs PANDA's headers, and the targets to check it for.
GPM_PANDA_DEP := csrc/panda/host_panda.c csrc/panda/guest_plugin_manager.c \
	csrc/panda/linjector.c csrc/panda/osi_provider.c \
	$(wildcard csrc/panda/regs_*.c)
# One word per softmmu target, its config-target.h macros joined by '+':
# i386, x86_64, arm, aarch64, mipsel, mips, mips64el, mips64, ppc.
GPM_PANDA_TARGETS := TARGET_I386 TARGET_X86_64 TARGET_ARM TARGET_AARCH64 \
	TARGET_MIPS TARGET_MIPS+TARGET_WORDS_BIGENDIAN \
	TARGET_MIPS64 TARGET_MIPS64+TARGET_WORDS_BIGENDIAN \
	TARGET_PPC+TARGET_WORDS_BIGENDIAN
GPM_PANDA_MARK := .pandagpm-plugin

.PHONY: panda-plugins panda-plugins-remove panda-glue-check \
	panda-plugins-check

panda-glue-check:
	@echo "[panda-glue-check] PANDA-independent glue, $(GPM_PANDA_CC) and $(GPM_PANDA_GCC)"
	@set -e; for cc in $(GPM_PANDA_CC) $(GPM_PANDA_GCC); do \
		for f in $(GPM_PANDA_FREE); do \
			$$cc -std=gnu11 $(GPM_PANDA_WARN) $(GPM_PANDA_INC) \
				$(GPM_PANDA_GLIB) -c -o /dev/null $$f; \
		done; \
	done
	@echo "[panda-glue-check] public headers as C99 and C++"
	@set -e; for h in guest_plugin_manager.h linjector.h; do \
		printf '#define GUEST_PLUGIN_MANAGER_WANT_IMPORT\n#include "%s"\n' $$h | \
			$(GPM_PANDA_CC) -std=c99 -pedantic $(GPM_PANDA_WARN) \
			-Icsrc/panda -x c -fsyntax-only -; \
		printf '#define GUEST_PLUGIN_MANAGER_WANT_IMPORT\n#include "%s"\n' $$h | \
			$(GPM_PANDA_CXX) $(GPM_PANDA_WARN) -Icsrc/panda \
			-x c++ -fsyntax-only -; \
	done
	@echo "[panda-glue-check] PANDA-dependent glue against csrc/panda/stub"
	@set -e; for t in $(GPM_PANDA_TARGETS); do \
		for f in $(GPM_PANDA_DEP); do \
			$(GPM_PANDA_CC) -std=gnu11 $(GPM_PANDA_WARN) \
				$$(echo "-D$$t" | sed 's/+/ -D/g') \
				-Icsrc/panda/stub $(GPM_PANDA_INC) $(GPM_PANDA_GLIB) \
				-c -o /dev/null $$f; \
		done; \
	done
	@echo "[panda-glue-check] both plugins through csrc/panda/Makefile (stub)"
	@set -e; t=$$(mktemp -d); trap 'rm -rf "$$t"' EXIT; \
	mkdir -p "$$t/panda/plugins" "$$t/build"; \
	touch "$$t/panda/plugins/config.panda"; \
	$(MAKE) --no-print-directory -s -f mk/panda.mk panda-plugins \
		PANDA_PATH="$$t" >/dev/null; \
	for p in $(GPM_PANDA_PLUGINS); do \
		$(MAKE) --no-print-directory -s -f csrc/panda/stub/panda.mak \
			-f "$$t/panda/plugins/$$p/Makefile" PLUGIN_NAME=$$p \
			PLUGIN_SRC_ROOT="$$t/panda/plugins" BUILD_DIR="$$t/build" \
			STUB_DIR=$(abspath csrc/panda/stub) TARGET=TARGET_X86_64 \
			CC=$(GPM_PANDA_CC); \
		nm -D --defined-only "$$t/build/panda_$$p.so" | \
			grep -qw init_plugin; \
		if nm -D --undefined-only "$$t/build/panda_$$p.so" | \
				grep -w 'gpm_stub_[a-z_]*'; then \
			echo "panda_$$p.so: OSI's API pointers undefined" \
				"(main unit not named $$p.c?)"; exit 1; \
		fi; \
		if nm -D --defined-only "$$t/build/panda_$$p.so" | \
				grep -qwE 'gpm_manager_new|gpm_panda_api_init'; then \
			echo "panda_$$p.so exports the core"; exit 1; \
		fi; \
	done; \
	nm -D --defined-only "$$t/build/panda_guest_plugin_manager.so" | \
		grep -qw add_guest_plugin
	@echo "[panda-glue-check] ok"

# The symbols each plugin must export (the core's must stay hidden).
GPM_PANDA_EXPORTS_guest_plugin_manager := init_plugin uninit_plugin \
	add_guest_plugin channel_write get_channel_from_name allocate_channel \
	guest_plugin_manager_last_error guest_plugin_manager_open_channel \
	ppp_add_cb_on_guest_agent_load \
	ppp_add_cb_on_guest_agent_load_with_context \
	PANDA_EXPORT_SYMBOLS_guest_plugin_manager
GPM_PANDA_EXPORTS_linjector := init_plugin uninit_plugin \
	ppp_add_cb_before_guest_inject ppp_add_cb_before_guest_inject_with_context \
	ppp_add_cb_after_guest_inject ppp_remove_cb_after_guest_inject

panda-plugins-check:
	@trees="$(or $(PANDA_PATH),$(shell cat .panda-paths 2>/dev/null || \
		cat .panda-path 2>/dev/null))"; \
	test -n "$$trees" || { echo "usage: make $@ PANDA_PATH=/path/to/panda" \
		"(a built PANDA tree; make panda writes .panda-path)"; exit 2; }; \
	set -e; for tree in $$trees; do \
	ls -d "$$tree"/build/*-softmmu >/dev/null 2>&1 || { \
		echo "$$tree: no built PANDA target (build/*-softmmu)"; exit 2; }; \
	$(MAKE) --no-print-directory -s -f mk/panda.mk panda-plugins \
		PANDA_PATH="$$tree" GPM_PANDA_NO_CONFIG=1 >/dev/null; \
	for td in "$$tree"/build/*-softmmu; do \
		t=$$(basename "$$td"); arch=$${t%-softmmu}; \
		for p in $(GPM_PANDA_PLUGINS); do \
			echo "[panda-plugins-check] $$t: panda_$$p.so with PANDA's panda.mak"; \
			mkdir -p "$$td/panda/plugins/$$p"; \
			$(MAKE) -C "$$td" --no-print-directory -s \
				-f "$$tree/panda/plugins/panda.mak" \
				-f "$$tree/panda/plugins/$$p/Makefile" \
				PLUGIN_SRC_ROOT="$$tree/panda/plugins" \
				BUILD_DIR="$$tree/build" PLUGIN_NAME=$$p \
				GPM_EXTRA_CFLAGS=-Werror all; \
			so="$$td/panda/plugins/panda_$$p.so"; \
			case $$p in \
			guest_plugin_manager) want="$(GPM_PANDA_EXPORTS_guest_plugin_manager)" ;; \
			*) want="$(GPM_PANDA_EXPORTS_linjector)" ;; \
			esac; \
			for sym in $$want; do \
				nm -D --defined-only "$$so" | grep -qw "$$sym" || { \
					echo "$$so does not export $$sym"; exit 1; }; \
			done; \
			if nm -D --defined-only "$$so" | grep -E ' gpm_'; then \
				echo "$$so exports the core"; exit 1; \
			fi; \
			if [ $$p = guest_plugin_manager ] && nm -D --defined-only \
					"$$so" | grep -E ' (__get_|init_osi_api)'; then \
				echo "$$so exports OSI's API pointers (linjector" \
					"would bind to them)"; exit 1; \
			fi; \
		done; \
		echo "[panda-plugins-check] $$t: dlopen(RTLD_NOW) against libpanda-$$arch.so"; \
		python3 -c 'import ctypes, os, sys; \
ctypes.CDLL(sys.argv[1], mode=os.RTLD_NOW | os.RTLD_GLOBAL); \
[ctypes.CDLL(p, mode=os.RTLD_NOW) for p in sys.argv[2:]]' \
			"$$td/libpanda-$$arch.so" \
			$(foreach p,$(GPM_PANDA_PLUGINS),"$$td/panda/plugins/panda_$(p).so"); \
	done; \
	done; \
	echo "[panda-plugins-check] ok"

# Refuses to touch a directory it did not create (no marker file in it).
define gpm_panda_check_tree
	@test -n "$(PANDA_PATH)" || { \
		echo "usage: make $@ PANDA_PATH=/path/to/panda"; exit 2; }
	@test -f "$(PANDA_PATH)/panda/plugins/config.panda" || { \
		echo "$(PANDA_PATH): not a PANDA source tree" \
			"(no panda/plugins/config.panda)"; exit 2; }
	@set -e; for p in $(GPM_PANDA_PLUGINS); do \
		d="$(PANDA_PATH)/panda/plugins/$$p"; \
		if [ -e "$$d" ] && [ ! -e "$$d/$(GPM_PANDA_MARK)" ]; then \
			echo "$$d exists and was not made by pandagpm; not touching it"; \
			exit 2; \
		fi; \
	done
endef

panda-plugins:
	$(gpm_panda_check_tree)
	@set -e; \
	if [ "$(PANDA_LINK)" = 1 ]; then put="ln -s"; else put="cp"; fi; \
	for p in $(GPM_PANDA_PLUGINS); do \
		d="$(PANDA_PATH)/panda/plugins/$$p"; \
		rm -rf "$$d"; \
		mkdir -p "$$d/gpm_core" "$$d/gpm_include/gpm" "$$d/gpm_include/arch"; \
		touch "$$d/$(GPM_PANDA_MARK)"; \
		for f in $(abspath $(wildcard csrc/panda/*.c csrc/panda/*.h)) \
				$(abspath csrc/panda/Makefile); do \
			$$put "$$f" "$$d/"; \
		done; \
		for f in $(abspath $(wildcard csrc/core/*.c csrc/core/*.h \
				csrc/arch/*.c)); do \
			$$put "$$f" "$$d/gpm_core/"; \
		done; \
		for f in $(abspath $(wildcard csrc/arch/*.h)); do \
			$$put "$$f" "$$d/gpm_include/arch/"; \
		done; \
		for f in $(abspath $(wildcard csrc/include/gpm/*.h)); do \
			$$put "$$f" "$$d/gpm_include/gpm/"; \
		done; \
		cfg="$(PANDA_PATH)/panda/plugins/config.panda"; \
		if [ "$(GPM_PANDA_NO_CONFIG)" != 1 ]; then \
			grep -qx "$$p" "$$cfg" || echo "$$p" >> "$$cfg"; \
		fi; \
		echo "[panda-plugins] $$d"; \
	done
	@echo "[panda-plugins] now rebuild PANDA (e.g. cd $(PANDA_PATH)/build &&" \
		"make -j); the plugins are panda_guest_plugin_manager.so and" \
		"panda_linjector.so"

panda-plugins-remove:
	$(gpm_panda_check_tree)
	@set -e; for p in $(GPM_PANDA_PLUGINS); do \
		rm -rf "$(PANDA_PATH)/panda/plugins/$$p"; \
		sed -i "/^$$p\$$/d" "$(PANDA_PATH)/panda/plugins/config.panda"; \
	done
	@echo "[panda-plugins-remove] done"
