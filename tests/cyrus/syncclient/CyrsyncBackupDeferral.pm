#!/usr/bin/perl
#
#  Live scenario for the cyrsync sync_client executor (cyrus-patches 0004),
#  backup flavour (Cyrus 3.6.x backupd): copied into
#  cassandane/Cassandane/Cyrus/ by deferral.sh, run by Cassandane's
#  testrunner.  A master and a backup server (backupd) on channel "backup";
#  three users with mail; one user's backup is locked with `ctl_backups
#  lock` (backupd's non-blocking open then answers NO IMAP_MAILBOX_LOCKED)
#  while sync_client runs one rolling pass on the channel; the other two
#  users must be backed up, the locked user's items deferred to the
#  channel's log (shown by `cyrsync channel show`) and backed up once the
#  lock is gone.  Writes a transcript to $CYRSYNC_TRANSCRIPT.
#
#  Environment: CYRSYNC_CLI (the cyrsync binary), CYRSYNC_HOLDLOCK
#  (holdlock.py), CYRSYNC_TRANSCRIPT (output file), CYRSYNC_POLICY
#  (sync_lock_policy for the channel; default "defer").

package Cassandane::Cyrus::CyrsyncBackupDeferral;
use strict;
use warnings;

use lib '.';
use base qw(Cassandane::Cyrus::TestCase);
use Cassandane::Util::Log;
use Cassandane::Config;

my $CHANNEL = 'backup';
my $CHANDIR = "/$CHANNEL";
my @USERS = qw(alice bob carol);    # alice is the one locked

sub new
{
    my $class = shift;
    my $config = Cassandane::Config->default()->clone();
    my $policy = $ENV{CYRSYNC_POLICY} || 'defer';
    $config->set(sync_log => 1,
                 sync_log_channels => $CHANNEL,
                 "${CHANNEL}_sync_lock_policy" => $policy);
    return $class->SUPER::new({ config => $config, backups => 1,
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

sub count_backup
{
    my ($self, $u) = @_;
    my $dir = $self->{backups}->get_basedir();
    my $out = "$dir/count-$u.out";
    my $code = $self->{backups}->run_command({
        cyrus => 1,
        redirects => { stdout => $out, stderr => "$dir/count-$u.err" },
        handlers => { exited_abnormally => sub { my ($c, $x) = @_; return $x; } },
    }, 'cyr_backup', '-u', $u, 'list', 'messages');
    return -1 if $code;
    open(my $fh, '<', $out) or return -1;
    my @l = grep { /[0-9a-f]{40}/ } <$fh>;
    close($fh);
    return scalar @l;
}

# master message counts and messages in each user's backup; returns the
# users whose counts differ
sub show_counts
{
    my ($self, $locked) = @_;
    my @differ;
    $self->say_t(sprintf("  %-8s %8s %8s", 'user', 'master', 'backup'));
    foreach my $u (@USERS) {
        my $m = $self->count_messages($self->{instance}, $u);
        if (defined $locked && $u eq $locked) {
            # cyr_backup would wait for the lock
            push(@differ, $u);
            $self->say_t(sprintf("  %-8s %8d %8s", $u, $m, '(locked)'));
            next;
        }
        my $r = $self->count_backup($u);
        push(@differ, $u) if $m != $r;
        $self->say_t(sprintf("  %-8s %8d %8d%s", $u, $m, $r,
                             $m == $r ? '' : '   <- not backed up'));
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

# sync_client -R -1: one rolling-mode pass over the channel's log
sub rolling_pass
{
    my ($self, $name) = @_;
    my $dir = $self->{instance}->get_basedir();
    my @cmd = ('sync_client', '-v', '-v', '-o', '-R', '-1', '-n', $CHANNEL);
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

# ctl_backups lock -u USER -x CMD holds USER's backup lock while CMD runs;
# CMD waits for a flag file to go
sub lock_backup
{
    my ($self, $user) = @_;
    my $dir = $self->{backups}->get_basedir();
    my $flag = "$dir/hold-$user";
    open(my $fh, '>', $flag) or die "$flag: $!";
    close($fh);
    unlink("$dir/locked-$user");
    my $pid = $self->{backups}->run_command({
        cyrus => 1, background => 1,
        redirects => { stdout => "$dir/lock-$user.out", stderr => "$dir/lock-$user.err" },
    }, 'ctl_backups', 'lock', '-u', $user, '-x',
       "touch $dir/locked-$user; while [ -e $flag ]; do sleep 0.1; done");
    for (1..100) {
        last if -e "$dir/locked-$user";
        select(undef, undef, undef, 0.1);
    }
    die "ctl_backups lock did not lock $user" if !-e "$dir/locked-$user";
    return ($pid, $flag);
}

sub test_deferral
{
    my ($self) = @_;
    my $policy = $ENV{CYRSYNC_POLICY} || 'defer';

    $self->say_t("== setup: master + backupd, channel $CHANNEL "
                 . "(sync_log_channels: $CHANNEL, ${CHANNEL}_sync_lock_policy: $policy)");
    foreach my $u (@USERS) {
        $self->{instance}->create_user($u);
    }
    $self->append_mail('first');

    $self->say_t("", "== pass 1: nothing locked");
    $self->rolling_pass('pass1');
    my @differ = $self->show_counts();
    $self->assert_deep_equals([], \@differ);

    $self->say_t("", "== new mail for everyone; alice's backup is locked");
    $self->append_mail('second');
    $self->say_t("\$ ctl_backups lock -u alice -x 'wait for a flag file to go'  (backup server)");
    my ($pid, $flag) = $self->lock_backup('alice');
    $self->say_t("  locked");

    $self->say_t("", "== pass 2: alice locked");
    $self->rolling_pass('pass2');
    @differ = $self->show_counts('alice');
    $self->show_channel();
    $self->assert_deep_equals(['alice'], \@differ);

    sleep 2;
    $self->say_t("", "== pass 3: alice still locked (2 s later)");
    $self->rolling_pass('pass3');
    @differ = $self->show_counts('alice');
    $self->show_channel();
    $self->assert_deep_equals(['alice'], \@differ);

    unlink($flag);
    $self->{backups}->reap_command($pid);
    $self->say_t("", "== lock released (ctl_backups exited)");
    @differ = $self->show_counts();
    $self->assert_deep_equals(['alice'], \@differ);

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
    $self->say_t("", "RESULT: PASS");
}

1;
