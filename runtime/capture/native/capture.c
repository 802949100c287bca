// Sluice's capture addon: what Node.js cannot do itself for in-pod redirection. It creates TCP
// sockets inside a pod's network namespace (listening, or marked for the proxy's own outbound
// connections) and reads the original destination of a redirected connection (SO_ORIGINAL_DST).
// Only a short-lived helper thread enters the pod's netns; the caller's thread never moves.

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <node_api.h>

#define CHECK_NAPI(env, call)                                                   \
  do {                                                                          \
    if ((call) != napi_ok) {                                                    \
      napi_throw_error((env), "SLUICE_ERR_CAPTURE_NATIVE", "N-API call failed: " #call); \
      return NULL;                                                              \
    }                                                                           \
  } while (0)

static napi_value throw_errno(napi_env env, int err, const char *what) {
  char msg[1024];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_value code, message, error;
  const char *name = err == ENOENT ? "ENOENT" : err == EACCES ? "EACCES" : err == EPERM ? "EPERM" : err == EADDRINUSE ? "EADDRINUSE" : err == EBADF ? "EBADF" : err == ENOTSOCK ? "ENOTSOCK" : "EIO";
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error);
  napi_value errnoValue;
  napi_create_int32(env, err, &errnoValue);
  napi_set_named_property(env, error, "errno", errnoValue);
  napi_throw(env, error);
  return NULL;
}

struct netns_socket {
  const char *path;
  int family;
  int fd;
  int err;
  const char *step;
};

// Runs on its own thread: setns() changes only this thread's namespace, and the thread ends
// right after, so no other thread (libuv's pool, V8's) ever runs in the pod's netns.
static void *socket_in_netns_thread(void *arg) {
  struct netns_socket *s = arg;
  int nsfd = open(s->path, O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) {
    s->err = errno;
    s->step = "cannot open the network namespace";
    return NULL;
  }
  if (setns(nsfd, CLONE_NEWNET) != 0) {
    s->err = errno;
    s->step = "cannot enter the network namespace (setns needs CAP_SYS_ADMIN)";
    close(nsfd);
    return NULL;
  }
  close(nsfd);
  // A socket belongs to the netns it was created in, for its whole life; bind/listen/connect
  // later from any thread still act in that netns.
  s->fd = socket(s->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0) {
    s->err = errno;
    s->step = "cannot create a socket in the network namespace";
  }
  return NULL;
}

static int socket_in_netns(const char *path, int family, const char **step) {
  struct netns_socket s = {.path = path, .family = family, .fd = -1, .err = 0, .step = NULL};
  pthread_t thread;
  int rc = pthread_create(&thread, NULL, socket_in_netns_thread, &s);
  if (rc != 0) {
    *step = "cannot start the thread that enters the network namespace";
    errno = rc;
    return -1;
  }
  pthread_join(thread, NULL);
  if (s.fd < 0) {
    *step = s.step;
    errno = s.err;
    return -1;
  }
  return s.fd;
}

static int get_string(napi_env env, napi_value value, char *buf, size_t size) {
  size_t len;
  if (napi_get_value_string_utf8(env, value, buf, size, &len) != napi_ok) return -1;
  return len + 1 < size ? 0 : -1;
}

static int parse_address(const char *host, int port, struct sockaddr_storage *addr, socklen_t *len) {
  memset(addr, 0, sizeof *addr);
  struct sockaddr_in *v4 = (struct sockaddr_in *)addr;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)addr;
  if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    *len = sizeof *v4;
    return 0;
  }
  if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    *len = sizeof *v6;
    return 0;
  }
  return -1;
}

static int set_mark(int fd, uint32_t mark) {
  return mark == 0 ? 0 : setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark);
}

// A port shared by an old and a new proxy (an upgrade): SO_REUSEPORT puts both listeners in one
// group, and the group's program sends every new connection to the socket at index 1, the second
// to join (the newer proxy's). With one socket, index 1 does not exist and the kernel falls back
// to its hash (the only socket). When the old socket closes, the newer one moves to index 0. So
// the old proxy's accept queue stops filling as soon as the new one listens, and closing it later
// resets no connection (Linux resets those still queued on a closing reuseport listener).
static const char *share_port(int fd) {
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) return "SO_REUSEADDR";
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) return "SO_REUSEPORT";
  return NULL;
}

static const char *steer_to_newest(int fd) {
  struct sock_filter code[] = {BPF_STMT(BPF_RET | BPF_K, 1)};
  struct sock_fprog prog = {.len = 1, .filter = code};
  // After listen(): the program belongs to the group the socket joined.
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog) != 0) return "SO_ATTACH_REUSEPORT_CBPF";
  return NULL;
}

// Options, bind, listen and the steering program on a fresh socket; the name of the failed step or NULL.
static const char *listen_shared(int fd, const struct sockaddr_storage *addr, socklen_t addrlen, uint32_t mark) {
  int one = 1;
  const char *failed = share_port(fd);
  if (failed) return failed;
  // v6-only: an IPv6 listener on [::]:15006 must not take the IPv4 port its sibling holds.
  if (addr->ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) return "IPV6_V6ONLY";
  if (set_mark(fd, mark) != 0) return "SO_MARK (needs CAP_NET_ADMIN)";
  if (bind(fd, (const struct sockaddr *)addr, addrlen) != 0) return "bind";
  if (listen(fd, 511) != 0) return "listen";
  return steer_to_newest(fd);
}

// listenInNetns(netnsPath, host, port, mark) -> fd of a listening, non-blocking TCP socket, its
// port shared with another proxy's (SO_REUSEPORT, new connections to the newer one).
static napi_value listen_in_netns(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[4096], host[64];
  int32_t port;
  uint32_t mark;
  if (argc < 4 || get_string(env, argv[0], path, sizeof path) || get_string(env, argv[1], host, sizeof host) ||
      napi_get_value_int32(env, argv[2], &port) != napi_ok || napi_get_value_uint32(env, argv[3], &mark) != napi_ok || port < 0 || port > 65535) {
    napi_throw_type_error(env, "SLUICE_ERR_CAPTURE_NATIVE", "listenInNetns(netnsPath: string, host: string, port: 0-65535, mark: uint32)");
    return NULL;
  }
  struct sockaddr_storage addr;
  socklen_t addrlen;
  if (parse_address(host, port, &addr, &addrlen) != 0) {
    napi_throw_type_error(env, "SLUICE_ERR_CAPTURE_NATIVE", "listenInNetns: host must be an IPv4 or IPv6 address literal");
    return NULL;
  }
  const char *step = NULL;
  int fd = socket_in_netns(path, addr.ss_family, &step);
  if (fd < 0) {
    char what[4200];
    snprintf(what, sizeof what, "%s %s", step, path);
    return throw_errno(env, errno, what);
  }
  const char *failed = listen_shared(fd, &addr, addrlen, mark);
  if (failed) {
    int err = errno;
    close(fd);
    char what[4400];
    snprintf(what, sizeof what, "%s on %s:%d in %s failed", failed, host, port, path);
    return throw_errno(env, err, what);
  }
  napi_value result;
  CHECK_NAPI(env, napi_create_int32(env, fd, &result));
  return result;
}

// listenShared(host, port, v6only) -> fd of a listening, non-blocking TCP socket in the caller's
// own netns (the node's ports: tunnel, admin, metrics), shared as listenInNetns' are. `v6only`
// false lets [::] take IPv4 too, as Node's own listen does.
static napi_value listen_shared_js(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char host[64];
  int32_t port;
  bool v6only;
  if (argc < 3 || get_string(env, argv[0], host, sizeof host) || napi_get_value_int32(env, argv[1], &port) != napi_ok ||
      napi_get_value_bool(env, argv[2], &v6only) != napi_ok || port < 0 || port > 65535) {
    napi_throw_type_error(env, "SLUICE_ERR_CAPTURE_NATIVE", "listenShared(host: string, port: 0-65535, v6only: boolean)");
    return NULL;
  }
  struct sockaddr_storage addr;
  socklen_t addrlen;
  if (parse_address(host, port, &addr, &addrlen) != 0) {
    napi_throw_type_error(env, "SLUICE_ERR_CAPTURE_NATIVE", "listenShared: host must be an IPv4 or IPv6 address literal");
    return NULL;
  }
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "cannot create a socket");
  const char *failed = share_port(fd);
  int v6 = v6only ? 1 : 0;
  if (!failed && addr.ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6, sizeof v6) != 0) failed = "IPV6_V6ONLY";
  if (!failed && bind(fd, (struct sockaddr *)&addr, addrlen) != 0) failed = "bind";
  if (!failed && listen(fd, 511) != 0) failed = "listen";
  if (!failed) failed = steer_to_newest(fd);
  if (failed) {
    int err = errno;
    close(fd);
    char what[256];
    snprintf(what, sizeof what, "%s on %s:%d failed", failed, host, port);
    return throw_errno(env, err, what);
  }
  napi_value result;
  CHECK_NAPI(env, napi_create_int32(env, fd, &result));
  return result;
}

// socketInNetns(netnsPath, family 4|6, mark) -> fd of an unconnected, non-blocking TCP socket
// carrying `mark`, for the proxy's own connections from inside the pod.
static napi_value socket_in_netns_js(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[4096];
  int32_t family;
  uint32_t mark;
  if (argc < 3 || get_string(env, argv[0], path, sizeof path) || napi_get_value_int32(env, argv[1], &family) != napi_ok ||
      (family != 4 && family != 6) || napi_get_value_uint32(env, argv[2], &mark) != napi_ok) {
    napi_throw_type_error(env, "SLUICE_ERR_CAPTURE_NATIVE", "socketInNetns(netnsPath: string, family: 4 | 6, mark: uint32)");
    return NULL;
  }
  const char *step = NULL;
  int fd = socket_in_netns(path, family == 4 ? AF_INET : AF_INET6, &step);
  if (fd < 0) {
    char what[4200];
    snprintf(what, sizeof what, "%s %s", step, path);
    return throw_errno(env, errno, what);
  }
  if (set_mark(fd, mark) != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, err, "SO_MARK (needs CAP_NET_ADMIN) failed");
  }
  napi_value result;
  CHECK_NAPI(env, napi_create_int32(env, fd, &result));
  return result;
}

// A thread parked in one pod's netns that creates sockets there on request: per connection a
// mutex/condvar round trip instead of a thread start plus setns() (measured ~190 us on a
// 2 vCPU VM, which caps the rate of new captured connections).
struct netns_worker {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int nsfd;
  int started_err;  // setns() failure, reported by netnsOpen
  int started;      // 1 once the thread entered the netns (or failed to)
  int pending;      // a request waits: family set, fd/err to be filled
  int quit;
  int stopped;      // thread joined and nsfd closed (netnsClose); the struct lives until finalized
  int family;
  int fd;
  int err;
};

static void *netns_worker_main(void *arg) {
  struct netns_worker *w = arg;
  int rc = setns(w->nsfd, CLONE_NEWNET);
  pthread_mutex_lock(&w->mu);
  w->started_err = rc == 0 ? 0 : errno;
  w->started = 1;
  pthread_cond_broadcast(&w->cv);
  while (rc == 0 && !w->quit) {
    if (!w->pending) {
      pthread_cond_wait(&w->cv, &w->mu);
      continue;
    }
    w->fd = socket(w->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    w->err = w->fd < 0 ? errno : 0;
    w->pending = 0;
    pthread_cond_broadcast(&w->cv);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

static void netns_worker_stop(struct netns_worker *w) {
  if (w->stopped) return;
  pthread_mutex_lock(&w->mu);
  w->quit = 1;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
  pthread_join(w->thread, NULL);
  close(w->nsfd);
  w->stopped = 1;
}

static void netns_worker_free(struct netns_worker *w) {
  netns_worker_stop(w);
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
  free(w);
}

static void netns_worker_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  if (data) netns_worker_free(data);
}

// netnsOpen(netnsPath) -> handle: starts the worker; throws when the netns cannot be entered.
static napi_value netns_open(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[4096];
  if (argc < 1 || get_string(env, argv[0], path, sizeof path)) {
    napi_throw_type_error(env, "SLUICE_ERR_CAPTURE_NATIVE", "netnsOpen(netnsPath: string)");
    return NULL;
  }
  int nsfd = open(path, O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) {
    char what[4200];
    snprintf(what, sizeof what, "cannot open the network namespace %s", path);
    return throw_errno(env, errno, what);
  }
  struct netns_worker *w = calloc(1, sizeof *w);
  if (!w) {
    close(nsfd);
    return throw_errno(env, ENOMEM, "netnsOpen");
  }
  w->nsfd = nsfd;
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  int rc = pthread_create(&w->thread, NULL, netns_worker_main, w);
  if (rc != 0) {
    close(nsfd);
    free(w);
    return throw_errno(env, rc, "cannot start the thread that enters the network namespace");
  }
  pthread_mutex_lock(&w->mu);
  while (!w->started) pthread_cond_wait(&w->cv, &w->mu);
  int err = w->started_err;
  pthread_mutex_unlock(&w->mu);
  if (err != 0) {
    netns_worker_free(w);
    char what[4200];
    snprintf(what, sizeof what, "cannot enter the network namespace %s (setns needs CAP_SYS_ADMIN)", path);
    return throw_errno(env, err, what);
  }
  napi_value handle;
  CHECK_NAPI(env, napi_create_external(env, w, netns_worker_finalize, NULL, &handle));
  return handle;
}

// netnsSocket(handle, family 4|6, mark) -> fd: like socketInNetns, through the parked worker.
static napi_value netns_socket(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct netns_worker *w = NULL;
  int32_t family;
  uint32_t mark;
  if (argc < 3 || napi_get_value_external(env, argv[0], (void **)&w) != napi_ok || w == NULL ||
      napi_get_value_int32(env, argv[1], &family) != napi_ok || (family != 4 && family != 6) ||
      napi_get_value_uint32(env, argv[2], &mark) != napi_ok) {
    napi_throw_type_error(env, "SLUICE_ERR_CAPTURE_NATIVE", "netnsSocket(handle from netnsOpen, family: 4 | 6, mark: uint32)");
    return NULL;
  }
  if (w->stopped) return throw_errno(env, EBADF, "netnsSocket after netnsClose");
  pthread_mutex_lock(&w->mu);
  w->family = family == 4 ? AF_INET : AF_INET6;
  w->pending = 1;
  pthread_cond_broadcast(&w->cv);
  while (w->pending) pthread_cond_wait(&w->cv, &w->mu);
  int fd = w->fd, err = w->err;
  pthread_mutex_unlock(&w->mu);
  if (fd < 0) return throw_errno(env, err, "cannot create a socket in the network namespace");
  if (set_mark(fd, mark) != 0) {
    err = errno;
    close(fd);
    return throw_errno(env, err, "SO_MARK (needs CAP_NET_ADMIN) failed");
  }
  napi_value result;
  CHECK_NAPI(env, napi_create_int32(env, fd, &result));
  return result;
}

// netnsClose(handle): ends the worker thread now rather than when the handle is collected.
static napi_value netns_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct netns_worker *w = NULL;
  if (argc < 1 || napi_get_value_external(env, argv[0], (void **)&w) != napi_ok || w == NULL) {
    napi_throw_type_error(env, "SLUICE_ERR_CAPTURE_NATIVE", "netnsClose(handle from netnsOpen)");
    return NULL;
  }
  netns_worker_stop(w);
  return NULL;
}

// originalDst(fd) -> { address, port, family } of a connection redirected by nat REDIRECT.
static napi_value original_dst(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "SLUICE_ERR_CAPTURE_NATIVE", "originalDst(fd: non-negative integer)");
    return NULL;
  }
  struct sockaddr_storage local;
  socklen_t len = sizeof local;
  if (getsockname(fd, (struct sockaddr *)&local, &len) != 0) return throw_errno(env, errno, "getsockname failed");
  struct sockaddr_storage dst;
  memset(&dst, 0, sizeof dst);
  len = sizeof dst;
  int rc;
  int family;
  if (local.ss_family == AF_INET6) {
    rc = getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &len);
    family = 6;
  } else {
    rc = getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &len);
    family = 4;
  }
  if (rc != 0) return throw_errno(env, errno, "SO_ORIGINAL_DST failed (the connection was not redirected by nat)");
  char text[INET6_ADDRSTRLEN];
  int port;
  if (dst.ss_family == AF_INET6) {
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&dst;
    inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
    port = ntohs(v6->sin6_port);
  } else {
    struct sockaddr_in *v4 = (struct sockaddr_in *)&dst;
    inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
    port = ntohs(v4->sin_port);
  }
  napi_value result, address, portValue, familyValue;
  CHECK_NAPI(env, napi_create_object(env, &result));
  CHECK_NAPI(env, napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &address));
  CHECK_NAPI(env, napi_create_int32(env, port, &portValue));
  CHECK_NAPI(env, napi_create_int32(env, family, &familyValue));
  CHECK_NAPI(env, napi_set_named_property(env, result, "address", address));
  CHECK_NAPI(env, napi_set_named_property(env, result, "port", portValue));
  CHECK_NAPI(env, napi_set_named_property(env, result, "family", familyValue));
  return result;
}

// closeFd(fd): for a socket never handed to Node (an error path before adoption).
static napi_value close_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "SLUICE_ERR_CAPTURE_NATIVE", "closeFd(fd: non-negative integer)");
    return NULL;
  }
  close(fd);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"listenInNetns", NULL, listen_in_netns, NULL, NULL, NULL, napi_enumerable, NULL},
      {"listenShared", NULL, listen_shared_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"socketInNetns", NULL, socket_in_netns_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"netnsOpen", NULL, netns_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"netnsSocket", NULL, netns_socket, NULL, NULL, NULL, napi_enumerable, NULL},
      {"netnsClose", NULL, netns_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"originalDst", NULL, original_dst, NULL, NULL, NULL, napi_enumerable, NULL},
      {"closeFd", NULL, close_fd, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  CHECK_NAPI(env, napi_define_properties(env, exports, sizeof props / sizeof *props, props));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
