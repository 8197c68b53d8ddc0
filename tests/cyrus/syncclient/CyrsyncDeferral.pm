#!/usr/bin/perl
#
#  Live scenario for the cyrsync sync_client executor (cyrus-patches 0004):
#  copied into cassandane/Cassandane/Cyrus/ by deferral.sh, run by
#  Cassandane's testrunner.  A master and a replica; three users with
#  mail; one user's sync lock is held (as by a concurrent sync_client) while
#  sync_client runs one rolling pass on a channel with -N; the other two
#  users must be replicated, the locked user's items deferred to the
#  channel's log (shown by `cyrsync channel show`) and replicated once the
#  lock is gone.  Writes a transcript to $CYRSYNC_TRANSCRIPT.
#
#  Environment: CYRSYNC_CLI (the cyrsync binary), CYRSYNC_HOLDLOCK
#  (holdlock.py), CYRSYNC_TRANSCRIPT (output file), CYRSYNC_POLICY
#  (sync_lock_policy for the channel; default "defer"), CYRSYNC_CHANNEL
#  (see below), CYRSYNC_QUARANTINE (test_quarantine: sync_quarantine_after).

package Cassandane::Cyrus::CyrsyncDeferral;
use strict;
use warnings;

use lib '.';
use base qw(Cassandane::Cyrus::TestCase);
use Cassandane::Util::Log;
use Cassandane::Config;

# CYRSYNC_CHANNEL="" runs on the default channel (no -n)
my $CHANNEL = $ENV{CYRSYNC_CHANNEL} // 'chan';
my $CHANDIR = $CHANNEL eq '' ? '' : "/$CHANNEL";
my @USERS = qw(alice bob carol);    # alice is the one locked

sub new
{
    my $class = shift;
    my $config = Cassandane::Config->default()->clone();
    my $policy = $ENV{CYRSYNC_POLICY} || 'defer';
    if ($CHANNEL eq '') {
        $config->set(sync_log => 1, sync_lock_policy => $policy);
    }
    else {
        $config->set(sync_log => 1,
                     sync_log_channels => $CHANNEL,
                     "${CHANNEL}_sync_lock_policy" => $policy);
        # test_quarantine: CYRSYNC_QUARANTINE=N runs (with policy fail)
        $config->set("${CHANNEL}_sync_quarantine_after" => $ENV{CYRSYNC_QUARANTINE},
                     "${CHANNEL}_sync_lock_retries" => 2)
            if $ENV{CYRSYNC_QUARANTINE};
    }
    return $class->SUPER::new({ config => $config, replica => 1,
                                adminstore => 1 }, @_);
}

sub set_up
{
    my ($self) = @_;
    $self->SUPER::set_up();
}

sub tear_down
{
    my ($self) = @_;
    $self->SUPER::tear_down();
}

sub say_t
{
    my ($self, @lines) = @_;
    open(my $fh, '>>', $ENV{CYRSYNC_TRANSCRIPT})
        or die "cannot open $ENV{CYRSYNC_TRANSCRIPT}: $!";
    print $fh map { "$_\n" } map { split /\n/ } @lines;
    close($fh);
    xlog $self, $_ for @lines;
}

sub confdir
{
    my ($self) = @_;
    return $self->{instance}->get_basedir() . "/conf";
}

sub append_mail
{
    my ($self, $tag) = @_;
    my $svc = $self->{instance}->get_service('imap');
    foreach my $u (@USERS) {
        my $store = $svc->create_store(username => $u);
        $self->make_message("$tag for $u", store => $store);
        $store->disconnect();
    }
}

sub count_messages
{
    my ($self, $inst, $u) = @_;
    my $store = $inst->get_service('imap')->create_store(username => $u);
    my $talk = $store->get_client();
    my $st = $talk->status('INBOX', '(messages)');
    $store->disconnect();
    return (ref $st eq 'HASH' && defined $st->{messages}) ? $st->{messages} : -1;
}

# one table of master and replica message counts; returns the users whose
# counts differ
sub show_counts
{
    my ($self) = @_;
    my @differ;
    $self->say_t(sprintf("  %-8s %8s %8s", 'user', 'master', 'replica'));
    foreach my $u (@USERS) {
        my $m = $self->count_messages($self->{instance}, $u);
        my $r = $self->count_messages($self->{replica}, $u);
        push(@differ, $u) if $m != $r;
        $self->say_t(sprintf("  %-8s %8d %8d%s", $u, $m, $r,
                             $m == $r ? '' : '   <- not replicated'));
    }
    return @differ;
}

sub show_channel
{
    my ($self) = @_;
    my $conf = $self->confdir();
    my $cli = $ENV{CYRSYNC_CLI};
    $self->say_t("\$ cyrsync channel show --config-dir CONF $CHANNEL");
    $self->say_t(map { "  $_" } split(/\n/,
                 `$cli channel show --config-dir $conf $CHANNEL 2>&1`));
    my $log = "$conf/sync$CHANDIR/log";
    if (-e $log) {
        $self->say_t("\$ cat CONF/sync$CHANDIR/log");
        open(my $fh, '<', $log) or die "$log: $!";
        $self->say_t(map { chomp; "  $_" } <$fh>);
        close($fh);
    }
    else {
        $self->say_t("(no CONF/sync$CHANDIR/log)");
    }
}

# The monitoring at this moment: `cyrsync channel check` with these extra
# arguments must exit $want (0 OK, 1 WARNING, 2 CRITICAL); returns
# `cyrsync metrics` as { "name" => value } for this channel's samples.
sub monitor
{
    my ($self, $want, @args) = @_;
    my $conf = $self->confdir();
    my $cli = $ENV{CYRSYNC_CLI};
    my @ch = $CHANNEL eq '' ? () : ($CHANNEL);
    my $line = `$cli channel check --config-dir $conf @args @ch 2>&1`;
    my $code = $? >> 8;
    chomp $line;
    $self->say_t("\$ cyrsync channel check --config-dir CONF " . join(' ', @args, @ch),
                 "  $line", "  exit code $code");
    $self->assert_num_equals($want, $code);
    my $label = $CHANNEL eq '' ? '(default)' : $CHANNEL;
    my %m;
    foreach my $l (split(/\n/, `$cli metrics --config-dir $conf @ch`)) {
        next if $l =~ /^#/;
        my ($name, $labels, $v) = $l =~ /^(\w+)\{([^}]*)\} (\S+)$/ or next;
        next if $labels ne "channel=\"$label\"";
        $m{$name} = $v;
    }
    $self->say_t("\$ cyrsync metrics --config-dir CONF @ch  (excerpt)",
                 map { "  $_ $m{$_}" } grep { defined $m{$_} }
                 qw(cyrus_sync_deferred_items cyrus_sync_oldest_deferred_age_seconds
                    cyrus_sync_quarantined_items cyrus_sync_runs_total
                    cyrus_sync_bailouts_total cyrus_sync_deferrals_total
                    cyrus_sync_quarantines_total));
    $self->assert_num_equals(1, $m{cyrus_sync_channel_readable});
    return \%m;
}

# sync_client -R -1: one rolling-mode pass over the channel's log
sub rolling_pass
{
    my ($self, $name) = @_;
    my $dir = $self->{instance}->get_basedir();
    my @cmd = ('sync_client', '-v', '-v', '-o', '-R', '-1', '-N');
    push(@cmd, '-n', $CHANNEL) if $CHANNEL ne '';
    $self->{instance}->getsyslog();     # skip what came before
    $self->say_t("\$ " . join(' ', @cmd));
    my $code = $self->{instance}->run_command({
        cyrus => 1,
        redirects => { stdout => "$dir/$name.out", stderr => "$dir/$name.err" },
        handlers => { exited_abnormally => sub { my ($c, $x) = @_; return $x; } },
    }, @cmd);
    # sync_client's own report (-v -v) and its log lines; not the protocol
    foreach my $f ("$dir/$name.out", "$dir/$name.err") {
        open(my $fh, '<', $f) or next;
        while (my $l = <$fh>) {
            chomp $l;
            next if $l =~ /imap_sasl|debug logging|Destination supports/;
            $l =~ s{^\S*/(sync_client\[\d+\]: )}{$1};
            $self->say_t("  | $l")
                if $l =~ /^sync_client\[\d+\]: /
                || $l =~ /^(MAILBOXES|MAILBOX|USER|UNUSER|META|QUOTA|SEEN|SUB|UNMAILBOX|ANNOTATION) /;
        }
        close($fh);
    }
    $self->say_t("  exit code " . ($code // 'undef'));
    return $code;
}

sub lockfile_of
{
    my ($self, $user) = @_;
    my $lockdir = $self->confdir() . "/lock";
    my @f = grep { m{\*S\*[^/]*\*\Q$user\E\.lock$} }
            split(/\n/, `find $lockdir -name '*$user.lock'`);
    die "no sync lock file for $user under $lockdir" if !@f;
    return $f[0];
}

sub test_deferral
{
    my ($self) = @_;
    my $policy = $ENV{CYRSYNC_POLICY} || 'defer';

    $self->say_t($CHANNEL eq ''
                 ? "== setup: master + replica, default channel "
                   . "(sync_log: on, sync_lock_policy: $policy)"
                 : "== setup: master + replica, channel $CHANNEL "
                   . "(sync_log_channels: $CHANNEL, ${CHANNEL}_sync_lock_policy: $policy)");
    foreach my $u (@USERS) {
        $self->{instance}->create_user($u);
    }
    $self->append_mail('first');

    $self->say_t("", "== pass 1: nothing locked");
    $self->rolling_pass('pass1');
    my @differ = $self->show_counts();
    $self->assert_deep_equals([], \@differ);

    $self->say_t("", "== new mail for everyone; alice's sync lock is held "
                 . "(as by a concurrent sync_client)");
    $self->append_mail('second');
    my $lockfile = $self->lockfile_of('alice');
    my $pid = open(my $holder, '-|', 'python3', $ENV{CYRSYNC_HOLDLOCK}, $lockfile)
        or die "cannot start holdlock: $!";
    my $line = <$holder>;
    chomp $line;
    $line =~ s{^locked .*/}{locked .../};
    $self->say_t("holdlock.py: $line");

    $self->say_t("", "== pass 2: alice locked");
    $self->rolling_pass('pass2');
    @differ = $self->show_counts();
    $self->show_channel();
    $self->assert_deep_equals(['alice'], \@differ);

    sleep 2;
    $self->say_t("", "== pass 3: alice still locked (2 s later)");
    $self->rolling_pass('pass3');
    @differ = $self->show_counts();
    $self->show_channel();
    $self->assert_deep_equals(['alice'], \@differ);

    kill('TERM', $pid);
    close($holder);
    $self->say_t("", "== lock released");

    # (checked once the lock holder is gone, so that a failed assertion
    # cannot leave the test waiting for it) the deferral is 2 s old: over
    # a 1 s threshold, the check goes WARNING or CRITICAL; the metrics
    # count it
    $self->monitor(1, '--warn-age', '1', '--crit-age', 'none');
    my $m = $self->monitor(2, '--crit-age', '1');
    $self->assert($m->{cyrus_sync_deferred_items} >= 1);
    $self->assert($m->{cyrus_sync_oldest_deferred_age_seconds} >= 1);
    $self->assert($m->{cyrus_sync_deferrals_total} >= 2);
    $self->assert($m->{cyrus_sync_runs_total} >= 3);

    $self->say_t("", "== pass 4: nothing locked");
    $self->rolling_pass('pass4');
    # a pass may leave work for the next: on vanilla Cyrus the log-run a
    # deferred last action kept (its LOCKED result); patched, the items
    # deferred while the lock was held are in the log
    if (-e $self->confdir() . "/sync$CHANDIR/log-run"
        || -e $self->confdir() . "/sync$CHANDIR/log") {
        $self->say_t("", "== pass 5: what pass 4 left");
        $self->rolling_pass('pass5');
    }
    @differ = $self->show_counts();
    $self->show_channel();
    $self->assert_deep_equals([], \@differ);
    # synced: nothing deferred any more, the check is back to OK (default
    # thresholds: a record a daemon has just logged is not an alarm)
    $m = $self->monitor(0);
    $self->assert_num_equals(0, $m->{cyrus_sync_deferred_items});
    $self->say_t("", "RESULT: PASS");
}

# policy "fail" and sync_quarantine_after N: runs bail out on the locked
# user until the Nth, then its items are set aside in log-quarantine (the
# rest of the log proceeds); once the lock is gone the admin replays them
# with sync_client -f
sub test_quarantine
{
    my ($self) = @_;
    my $n = $ENV{CYRSYNC_QUARANTINE} or return;
    my $conf = $self->confdir();

    $self->say_t("== setup: master + replica, channel $CHANNEL "
                 . "(${CHANNEL}_sync_lock_policy: fail, "
                 . "${CHANNEL}_sync_lock_retries: 2, "
                 . "${CHANNEL}_sync_quarantine_after: $n)");
    foreach my $u (@USERS) {
        $self->{instance}->create_user($u);
    }
    $self->append_mail('first');
    $self->say_t("", "== pass 1: nothing locked");
    $self->rolling_pass('pass1');
    $self->assert_deep_equals([], [$self->show_counts()]);

    $self->say_t("", "== new mail for everyone; alice's sync lock is held");
    $self->append_mail('second');
    my $pid = open(my $holder, '-|', 'python3', $ENV{CYRSYNC_HOLDLOCK},
                   $self->lockfile_of('alice'))
        or die "cannot start holdlock: $!";
    my $line = <$holder>;

    for my $i (1 .. $n + 1) {
        my $pass = $i + 1;
        $self->say_t("", "== pass $pass: alice locked");
        $self->rolling_pass("pass$pass");
        $self->assert_deep_equals(['alice'], [$self->show_counts()]);
        $self->show_channel();
    }
    $self->assert(-s "$conf/sync/$CHANNEL/log-quarantine");

    kill('TERM', $pid);
    close($holder);
    $self->say_t("", "== lock released");

    # quarantined items: WARNING by default, CRITICAL over a threshold; the
    # runs bailed out N-1 times, the Nth quarantined instead
    my $m = $self->monitor(1, '--warn-age', 'none', '--crit-age', 'none');
    $self->assert($m->{cyrus_sync_quarantined_items} >= 1);
    # why: alice's items stayed LOCKED through policy fail's retries
    my $label = $CHANNEL eq '' ? '(default)' : $CHANNEL;
    my @ch = $CHANNEL eq '' ? () : ($CHANNEL);
    my ($why) = grep { /^cyrus_sync_quarantined_items_by_reason\{channel="\Q$label\E",/ }
                split(/\n/, `$ENV{CYRSYNC_CLI} metrics --config-dir $conf @ch`);
    $self->say_t("  $why") if defined $why;
    $self->assert_matches(qr/,reason="locked"\} [1-9]/, $why // '');
    $self->assert($m->{cyrus_sync_quarantines_total} >= 1);
    $self->assert($m->{cyrus_sync_bailouts_total} >= $n - 1);
    $self->monitor(2, '--warn-age', 'none', '--crit-age', 'none', '--crit-quarantined', '0');
    my $pass = $n + 3;
    $self->say_t("", "== pass $pass: nothing locked (alice's items are in quarantine)");
    $self->rolling_pass("pass$pass");
    $self->assert_deep_equals(['alice'], [$self->show_counts()]);

    $self->say_t("", "== the admin replays the quarantine file");
    my @cmd = ('sync_client', '-v', '-v', '-o', '-R', '-n', $CHANNEL,
               '-f', "$conf/sync/$CHANNEL/log-quarantine");
    $self->say_t("\$ sync_client -v -v -o -R -n $CHANNEL -f CONF/sync/$CHANNEL/log-quarantine");
    my $code = $self->{instance}->run_command({
        cyrus => 1,
        handlers => { exited_abnormally => sub { my ($c, $x) = @_; return $x; } },
    }, @cmd);
    $self->say_t("  exit code " . ($code // 'undef'));
    $self->assert_deep_equals([], [$self->show_counts()]);
    $self->say_t("", "== replayed: the admin removes the quarantine file");
    unlink("$conf/sync/$CHANNEL/log-quarantine")
        or die "unlink log-quarantine: $!";
    $m = $self->monitor(0, '--warn-age', 'none', '--crit-age', 'none');
    $self->assert_num_equals(0, $m->{cyrus_sync_quarantined_items});
    $self->say_t("", "RESULT: PASS");
}

1;
