<?php
// mod_msm test application, PHP twin of app.cgi for php-fpm behind
// mod_proxy_fcgi (scripts/test.sh --fpm): same URL (/msm/app.cgi is routed
// here with ProxyFCGISetEnvIf SCRIPT_FILENAME), same operations, same JSON.
// The session arrives as the FastCGI parameter HTTP_SESSION (SessionEnv On)
// and is written with the response header X-Replace-Session. "pid" is the
// php-fpm worker's; "app" says "php-fpm" (app.cgi: "cgi"). Under mod_php
// (conf/deploy/prefork-mod_php.conf, t/65_deploy.t) "app" is "mod_php" and
// "pid" the httpd child's; any other SAPI is reported by its own name.

function parse_pairs($str) {
    $h = array();
    if ($str === null || $str === '') {
        return $h;
    }
    foreach (preg_split('/[&;]/', $str) as $pair) {
        if ($pair === '') {
            continue;
        }
        $kv = explode('=', $pair, 2);
        $h[urldecode($kv[0])] = isset($kv[1]) ? urldecode($kv[1]) : '';
    }
    return $h;
}

$q = parse_pairs(isset($_SERVER['QUERY_STRING']) ? $_SERVER['QUERY_STRING'] : '');
$raw = isset($_SERVER['HTTP_SESSION']) ? $_SERVER['HTTP_SESSION'] : null;
$in = parse_pairs($raw);
unset($in['expiry']);
$session = $in;
$op = isset($q['op']) ? $q['op'] : 'read';
$extra = array();

function write_session(array $changes) {
    global $session;
    ksort($changes, SORT_STRING);
    $parts = array();
    foreach ($changes as $k => $v) {
        $parts[] = rawurlencode((string)$k) . '=' . rawurlencode((string)$v);
    }
    // an empty header would not be seen by mod_session
    if ($parts) {
        header('X-Replace-Session: ' . implode('&', $parts));
    }
    foreach ($changes as $k => $v) {
        if ((string)$v !== '') {
            $session[$k] = (string)$v;
        } else {
            unset($session[$k]);
        }
    }
}

$ms = isset($q['sleep_ms']) ? $q['sleep_ms'] : ($op === 'sleep' && isset($q['ms']) ? $q['ms'] : null);
if ($ms !== null && (int)$ms > 0) {
    usleep(min((int)$ms, 60000) * 1000);
}

switch ($op) {
case 'read':
case 'sleep':
    break;
case 'set':
    $ch = array();
    foreach (array_merge(array(''), range(2, 20)) as $i) {
        if (isset($q["k$i"])) {
            $ch[$q["k$i"]] = isset($q["v$i"]) ? $q["v$i"] : '';
        }
    }
    write_session($ch);
    break;
case 'incr':
    $k = isset($q['k']) ? $q['k'] : 'counter';
    $v = isset($session[$k]) && preg_match('/^-?\d+$/', $session[$k]) ? (int)$session[$k] : 0;
    $v++;
    write_session(array($k => $v));
    $extra['value'] = $v;
    break;
case 'destroy':
    write_session(array_fill_keys(array_keys($session), ''));
    break;
case 'env':
    $extra['env'] = $_SERVER;
    break;
default:
    http_response_code(400);
    header('Content-Type: text/plain');
    echo "unknown op '$op'\n";
    exit(0);
}

if (isset($q['status']) && preg_match('/^\d{3}$/', $q['status'])) {
    http_response_code((int)$q['status']);
}
// keys are strings in the JSON, as Perl's; an empty session is {}
$strings = function ($h) {
    $o = new stdClass();
    foreach ($h as $k => $v) {
        $o->{(string)$k} = (string)$v;
    }
    return $o;
};
$sapi = php_sapi_name();
$app = $sapi === 'fpm-fcgi' ? 'php-fpm' : ($sapi === 'apache2handler' ? 'mod_php' : $sapi);
$body = array_merge(array(
    'op' => $op,
    'app' => $app,
    'pid' => getmypid(),
    'session' => $strings($session),
    'session_in' => $strings($in),
    'raw' => $raw,
), $extra);
header('Content-Type: application/json');
header('Cache-Control: no-store');
echo json_encode($body, JSON_UNESCAPED_SLASHES), "\n";
