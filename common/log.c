#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"

static ccp_log_level min_level = CCP_LOG_INFO;
static ccp_log_format format = CCP_LOG_JSON;
static bool log_bodies = false;
static size_t body_cap = 4096;
static const char *service_name = "ccproxy";

static const char *const level_names[] = {"debug", "info", "warning", "error"};

void ccp_log_init(const ccp_config *cfg, const char *service)
{
    min_level = cfg->log_level;
    format = cfg->log_format;
    log_bodies = cfg->environment == CCP_ENV_TEST;
    body_cap = cfg->log_body_max_bytes;
    service_name = service;
}

bool ccp_log_enabled(ccp_log_level level)
{
    return level >= min_level;
}

static void timestamp(ccp_buf *b)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    ccp_buf_printf(b, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                   tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(tv.tv_usec / 1000));
}

static void emit(ccp_buf *b)
{
    ccp_buf_append_char(b, '\n');
    const char *p = b->data;
    size_t left = b->len;
    while (left > 0) {
        ssize_t n = write(STDERR_FILENO, p, left);
        if (n <= 0) break;
        p += n;
        left -= (size_t)n;
    }
}

static void begin(ccp_buf *b, ccp_log_level level, const char *event)
{
    if (format == CCP_LOG_JSON) {
        ccp_buf_append_str(b, "{\"time\":\"");
        timestamp(b);
        ccp_buf_printf(b, "\",\"level\":\"%s\",\"event\":\"%s\",\"service\":\"%s\"", level_names[level], event,
                       service_name);
    } else {
        timestamp(b);
        ccp_buf_printf(b, " %-7s %s %s", level_names[level], service_name, event);
    }
}

/* Appends one field; console values are quoted only when they hold spaces. */
static void field_str(ccp_buf *b, const char *k, const char *v, size_t n)
{
    if (format == CCP_LOG_JSON) {
        ccp_buf_printf(b, ",\"%s\":\"", k);
        ccp_buf_append_json_escaped(b, v, n);
        ccp_buf_append_char(b, '"');
    } else {
        ccp_buf_printf(b, " %s=", k);
        bool quote = memchr(v, ' ', n) != NULL || n == 0;
        if (quote) ccp_buf_append_char(b, '"');
        ccp_buf_append_json_escaped(b, v, n);
        if (quote) ccp_buf_append_char(b, '"');
    }
}

static void field_cstr(ccp_buf *b, const char *k, const char *v)
{
    field_str(b, k, v, strlen(v));
}

static void field_raw(ccp_buf *b, const char *k, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void field_raw(ccp_buf *b, const char *k, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (format == CCP_LOG_JSON) ccp_buf_printf(b, ",\"%s\":%s", k, tmp);
    else ccp_buf_printf(b, " %s=%s", k, tmp);
}

static void finish(ccp_buf *b)
{
    if (format == CCP_LOG_JSON) ccp_buf_append_char(b, '}');
    emit(b);
    ccp_buf_free(b);
}

void ccp_log_event(ccp_log_level level, const char *event, const char *fmt, ...)
{
    if (level < min_level) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ccp_buf b = {0};
    begin(&b, level, event);
    field_cstr(&b, "message", msg);
    finish(&b);
}

void ccp_log_event_json(ccp_log_level level, const char *event, const char *json_members)
{
    if (level < min_level) return;
    ccp_buf b = {0};
    begin(&b, level, event);
    if (format == CCP_LOG_JSON) ccp_buf_printf(&b, ",%s", json_members);
    else ccp_buf_printf(&b, " %s", json_members);
    finish(&b);
}

static void body_field(ccp_buf *b, const char *k, const char *truncated_key, const char *body, size_t len)
{
    if (!log_bodies || !body) return;
    size_t n = len < body_cap ? len : body_cap;
    /* Never cut inside a UTF-8 sequence: the line must stay valid text. */
    while (n < len && n > 0 && ((unsigned char)body[n] & 0xC0) == 0x80) n--;
    field_str(b, k, body, n);
    if (n < len) field_raw(b, truncated_key, "true");
}

/* "usage":{"input":..,"output":..,"cache_read":..,"cache_creation":..},
 * with "reasoning" when the upstream named it; console: usage=in/out/... */
static void usage_field(ccp_buf *b, const ccp_usage *u)
{
    const long long *t = u->tokens;
    if (format == CCP_LOG_JSON) {
        ccp_buf_printf(b, ",\"usage\":{\"input\":%lld,\"output\":%lld,\"cache_read\":%lld,\"cache_creation\":%lld",
                       t[CCP_TOKENS_INPUT], t[CCP_TOKENS_OUTPUT], t[CCP_TOKENS_CACHE_READ], t[CCP_TOKENS_CACHE_CREATION]);
        if (u->reasoning_seen) ccp_buf_printf(b, ",\"reasoning\":%lld", t[CCP_TOKENS_REASONING]);
        ccp_buf_append_char(b, '}');
    } else {
        ccp_buf_printf(b, " usage=input:%lld,output:%lld,cache_read:%lld,cache_creation:%lld", t[CCP_TOKENS_INPUT],
                       t[CCP_TOKENS_OUTPUT], t[CCP_TOKENS_CACHE_READ], t[CCP_TOKENS_CACHE_CREATION]);
        if (u->reasoning_seen) ccp_buf_printf(b, ",reasoning:%lld", t[CCP_TOKENS_REASONING]);
    }
}

void ccp_log_request(const ccp_request_log *r)
{
    ccp_log_level level = r->status >= 500 ? CCP_LOG_ERROR : r->status >= 400 ? CCP_LOG_WARNING : CCP_LOG_INFO;
    /* A refused WebSocket handshake is routine, not a problem: the Codex
     * CLI's built-in provider opens every session with one. */
    if (r->status == 426) level = CCP_LOG_INFO;
    if (level < min_level) return;
    ccp_buf b = {0};
    begin(&b, level, "request");
    field_cstr(&b, "adapter", r->adapter ? r->adapter : "-");
    field_cstr(&b, "method", r->method ? r->method : "-");
    field_cstr(&b, "path", r->path ? r->path : "-");
    if (r->model) field_cstr(&b, "model", r->model);
    if (r->stream >= 0) field_raw(&b, "stream", "%s", r->stream ? "true" : "false");
    if (r->message_count >= 0) field_raw(&b, "message_count", "%d", r->message_count);
    if (r->user_agent) field_cstr(&b, "user_agent", r->user_agent);
    field_raw(&b, "status", "%d", r->status);
    field_raw(&b, "duration_ms", "%.2f", r->duration_ms);
    if (r->ttfb_ms >= 0) field_raw(&b, "upstream_ttfb_ms", "%.2f", r->ttfb_ms);
    field_raw(&b, "bytes_out", "%zu", r->bytes_out);
    if (r->bytes_in) field_raw(&b, "bytes_in", "%zu", r->bytes_in);
    if (r->request_id) field_cstr(&b, "request_id", r->request_id);
    if (r->upstream_request_id) field_cstr(&b, "upstream_request_id", r->upstream_request_id);
    if (r->usage) usage_field(&b, r->usage);
    if (r->key_fp) field_cstr(&b, "key_fp", r->key_fp);
    if (r->upstream) field_cstr(&b, "upstream", r->upstream);
    if (r->attempts > 0) field_raw(&b, "attempts", "%d", r->attempts);
    if (r->failover) field_cstr(&b, "failover", r->failover);
    if (r->error) field_cstr(&b, "error", r->error);
    body_field(&b, "request_body", "request_body_truncated", r->request_body, r->request_body_len);
    body_field(&b, "response_body", "response_body_truncated", r->response_body, r->response_body_len);
    finish(&b);
}
