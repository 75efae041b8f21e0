<?php
// bench/run.sh: the baseline page without any session.
$c = isset($_GET['c']) ? intval($_GET['c']) : 0;
echo "count=", $c + 1, "\n";
