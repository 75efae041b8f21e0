<?php
// bench/run.sh: the same page with PHP's own sessions (php-memcached cases).
// ?w=1: "write" shape; otherwise "read" shape (read_and_close).
// Same page as shared/repro/peer-bench/htdocs/phpmc/app.php.
if (isset($_GET['w'])) { session_start(); } else { session_start(['read_and_close' => true]); }
if (!isset($_SESSION['count'])) { if (!isset($_GET['w'])) { session_start(); } $_SESSION['count']=0; $_SESSION['user']='alice'; $_SESSION['pad']=str_repeat('x',200);}
if (isset($_GET['w'])) $_SESSION['count']++;
echo "count=", $_SESSION['count'], "\n";
