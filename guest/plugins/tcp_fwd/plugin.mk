# tcp_fwd uses a reader thread; glibc cross builds need libpthread named.
PLUGIN_tcp_fwd_LDLIBS := -lpthread
