<?php
// bench/run.sh: the application page of every mod_session based case (cookie,
// crypto, dbd, mod_msm): the session arrives in HTTP_SESSION (SessionEnv On)
// and is replaced with the X-Replace-Session header (SessionHeader).
// ?w=1: "write" shape (count+1); otherwise "read" shape (writes only a new session).
// Same page as shared/repro/peer-bench/htdocs/cookie/app.php.
$s = isset($_SERVER['HTTP_SESSION']) ? $_SERVER['HTTP_SESSION'] : '';
parse_str($s, $kv);
$c = isset($kv['count']) ? intval($kv['count']) : 0;
if (isset($_GET['w']) || $c == 0) { $c++; $kv['count'] = $c; $kv['user']='alice'; $kv['pad']=str_repeat('x', 200); header('X-Replace-Session: ' . http_build_query($kv)); }
echo "count=", $c, "\n";
