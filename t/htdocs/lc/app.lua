-- t/htdocs/lc/app.lua - the application of the lifecycle checker (t/90_lifecycle.t),
-- served by mod_lua (SetHandler lua-script; entry function "handle").
--
-- Reads the session from r.subprocess_env["HTTP_SESSION"] (mod_session
-- "SessionEnv On": url-encoded k=v&k2=v2; "expiry" is ignored) and changes it
-- through the response header X-Replace-Session (mod_session "SessionHeader
-- X-Replace-Session": the pairs are merged in, an empty value removes a key;
-- removing every key makes mod_msm destroy the session).
--
--   ?op=read                       no write
--   ?op=create&sid=S&w=T           only when the session has no sid: sid=S n=0 w=T
--   ?op=incr&w=T                   only when it has a sid: n=n+1 w=T
--   ?op=login&user=U&w=T           only when it has a sid: user=U w=T (mod_msm
--                                  gives the session a new id: MsmRegenerateOnLogin)
--   ?op=destroy                    only when it has a sid: every key removed
-- A precondition that fails means no write (did_write 0).
--
-- Answer (JSON, one line): {"op":..,"pid":..,"did_write":0|1,"in":{..},"out":{..}}
-- in = the session as received (without expiry), out = after the op.
-- Keys and values are plain tokens ([A-Za-z0-9_.-]); anything else is escaped.

local pid_cached

local function getpid()
    if pid_cached then return pid_cached end
    local f = io.open("/proc/self/stat", "r")
    if f then
        local s = f:read("*l") or ""
        f:close()
        pid_cached = tonumber(s:match("^(%d+)")) or 0
    end
    return pid_cached or 0
end

local function url_decode(s)
    s = s:gsub("+", " ")
    return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function url_encode(s)
    return (s:gsub("[^A-Za-z0-9_.~-]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function parse_session(raw)
    local t = {}
    if raw == nil or raw == "" then return t end
    for pair in raw:gmatch("[^&]+") do
        local k, v = pair:match("^([^=]*)=(.*)$")
        if k == nil then k, v = pair, "" end
        k = url_decode(k)
        if k ~= "" and k ~= "expiry" then t[k] = url_decode(v) end
    end
    return t
end

local function json_str(s)
    return '"' .. tostring(s):gsub('[%c"\\]', function(c)
        return string.format("\\u%04x", c:byte())
    end) .. '"'
end

local function json_obj(t)
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = k end
    table.sort(keys)
    local parts = {}
    for i, k in ipairs(keys) do parts[i] = json_str(k) .. ":" .. json_str(t[k]) end
    return "{" .. table.concat(parts, ",") .. "}"
end

function handle(r)
    local args = r:parseargs() or {}
    local op = args.op or "read"
    local sin = parse_session(r.subprocess_env["HTTP_SESSION"])
    local out = {}
    for k, v in pairs(sin) do out[k] = v end
    local set                           -- list of {key, value} to write
    if op == "create" then
        if sin.sid == nil and args.sid and args.w then
            set = { { "sid", args.sid }, { "n", "0" }, { "w", args.w } }
        end
    elseif op == "incr" then
        if sin.sid ~= nil and args.w then
            set = { { "n", tostring((tonumber(sin.n) or 0) + 1) }, { "w", args.w } }
        end
    elseif op == "login" then
        if sin.sid ~= nil and args.user and args.w then
            set = { { "user", args.user }, { "w", args.w } }
        end
    elseif op == "destroy" then
        if sin.sid ~= nil then
            set = {}
            for k in pairs(sin) do set[#set + 1] = { k, "" } end
        end
    end
    local did_write = 0
    if set and #set > 0 then
        local enc = {}
        for i, kv in ipairs(set) do
            enc[i] = url_encode(kv[1]) .. "=" .. url_encode(kv[2])
            if kv[2] == "" then out[kv[1]] = nil else out[kv[1]] = kv[2] end
        end
        r.headers_out["X-Replace-Session"] = table.concat(enc, "&")
        did_write = 1
    end
    r.content_type = "application/json"
    r:puts('{"op":' .. json_str(op) .. ',"pid":' .. getpid() .. ',"did_write":' .. did_write
           .. ',"in":' .. json_obj(sin) .. ',"out":' .. json_obj(out) .. '}\n')
    return apache2.OK
end
