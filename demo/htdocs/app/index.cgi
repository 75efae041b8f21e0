#!/usr/bin/perl
# The demo page: who is logged in, a counter kept in the session, and which
# back end (route) and memcached node served the request. POST increments.
use strict;
use warnings;

sub unescape { my $s = shift // ''; $s =~ tr/+/ /; $s =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge; $s }
sub html { my $s = shift // ''; $s =~ s/&/&amp;/g; $s =~ s/</&lt;/g; $s =~ s/>/&gt;/g; $s =~ s/"/&quot;/g; $s }

my %session = map { my ($k, $v) = split /=/, $_, 2; (unescape($k), unescape($v)) }
              grep { length } split /&/, ($ENV{HTTP_SESSION} // '');
my $count = $session{counter} // 0;
my $post = ($ENV{REQUEST_METHOD} // '') eq 'POST';
my $route = $ENV{MSM_DEMO_ROUTE} // '?';
my ($cookie) = ($ENV{HTTP_COOKIE} // '') =~ /MSMSESSION=([^;]+)/;
my ($node) = ($cookie // '') =~ /-([A-Za-z0-9_]+)(?:\.|$)/;

if ($post) {
    my $body = '';
    read STDIN, $body, $ENV{CONTENT_LENGTH} // 0;
    if ($body =~ /(?:^|&)action=logout(?:&|$)/) {
        # Empty every entry: mod_msm deletes the session and its cookie.
        print "Status: 303 See Other\nLocation: /login.html\n";
        print "X-Replace-Session: ", join('&', map { "$_=" } keys %session), "\n\n";
        exit;
    }
    $count++;
    print "Status: 303 See Other\nLocation: /app/\nX-Replace-Session: counter=$count\n\n";
    exit;
}
my $user = html($ENV{REMOTE_USER} // '');
$count = html($count);
print "Content-Type: text/html; charset=utf-8\nCache-Control: no-store\n\n";
print <<"HTML";
<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>mod_msm demo</title></head>
<body>
<h1>mod_msm demo</h1>
<p>Logged in as <b id="user">$user</b>.</p>
<p>Counter: <b id="counter">$count</b></p>
<p>Served by back end <b id="route">@{[html($route)]}</b>, session on memcached node <b id="node">@{[html($node // '-')]}</b>.</p>
<form method="post"><button id="incr" name="action" value="incr" type="submit">+1</button></form>
<form method="post"><button id="logout" name="action" value="logout" type="submit">Log out</button></form>
</body></html>
HTML
