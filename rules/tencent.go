package rules

import (
	"slices"
	"strings"
)

// This file is what Fanout knows about Tencent IM callback bodies: which commands exist,
// which are "before" callbacks, and which top-level JSON fields each carries. The linter
// uses it to warn about rules that test a field a route's callbacks never carry (the field
// is nil at run time, and nil != 0 is true) and to suggest a spelling for unknown names.
//
// Sources, cited per command below:
//   - PROTOCOL: Tencent's callback overview and per-command pages (the section is named).
//   - payload: a file in internal/fanouttest/tencentim/, Tencent's published sample bodies
//     (every top-level key of every payload is in its command's Fields; tencent_test.go
//     checks it).
//   - doocs: doocs/qcloud-im-server-sdk-java,
//     src/main/java/io/github/doocs/im/model/callback/<Class>.java (@JsonProperty names).
//   - dobyte: dobyte/tencent-im, callback/types.go (json tags).
//   - Tencent's documentation pages, by id: 1047/N is
//     https://www.tencentcloud.com/document/product/1047/N; trtc.io/N is
//     https://trtc.io/document/N.
//
// Fields holds only names found in a source. Where sources disagree on a spelling and
// neither is clearly a slip, both are listed, so that the linter stays quiet about either.

// CommandInfo describes one Tencent IM callback command.
type CommandInfo struct {
	Name   string   // e.g. "C2C.CallbackAfterSendMsg"
	Before bool     // a "before" callback whose answer decides the outcome
	Fields []string // top-level JSON body fields it carries; nil means unknown, not none
}

// tcCommands lists every command of PROTOCOL section 2, in that order. A nil Fields means
// the body is not documented in any source we have, so the linter must not warn about any
// field for that command. PROTOCOL section 2 also names two "message extension" callbacks
// whose command strings are unconfirmed; they are left out rather than guessed.
var tcCommands = []CommandInfo{
	// Operations. payload Alert.RequestOverLimit.json; PROTOCOL 4, 6.16.
	{Name: "Alert.RequestOverLimit", Fields: []string{
		"CallbackCommand", "ServiceName", "Command", "Request", "Limit"}},

	// Online status. payload State.StateChange.json; PROTOCOL 4, 6.5; doocs
	// StateChangeCallback.
	{Name: "State.StateChange", Fields: []string{
		"CallbackCommand", "EventTime", "Info", "KickedDevice"}},

	// Profile. payload Profile.CallbackPortraitSet.json; PROTOCOL 4, 6.15.
	{Name: "Profile.CallbackPortraitSet", Fields: []string{
		"CallbackCommand", "Operator_Account", "From_Account", "EventTime", "ProfileItem"}},

	// Relationship chain.
	// payload Sns.CallbackPrevFriendAdd.json; PROTOCOL 6.13; doocs PrevFriendAddCallback.
	{Name: "Sns.CallbackPrevFriendAdd", Before: true, Fields: []string{
		"CallbackCommand", "Requester_Account", "From_Account", "FriendItem", "AddType",
		"ForceAddFlags", "EventTime"}},
	// doocs PrevFriendResponseCallback.
	{Name: "Sns.CallbackPrevFriendResponse", Before: true, Fields: []string{
		"CallbackCommand", "Requester_Account", "From_Account", "ResponseFriendItem",
		"EventTime"}},
	// payload Sns.CallbackFriendAdd.json; PROTOCOL 4, 6.6; doocs FriendAddCallback;
	// EventTime from dobyte (FriendAdd embeds CommandBaseReq).
	{Name: "Sns.CallbackFriendAdd", Fields: []string{
		"CallbackCommand", "PairList", "ClientCmd", "Admin_Account", "ForceFlag", "EventTime"}},
	// doocs FriendDeleteCallback; dobyte SnsFriendDelete; 1047/34360.
	{Name: "Sns.CallbackFriendDelete", Fields: []string{"CallbackCommand", "PairList"}},
	// doocs BlacklistAddCallback; dobyte SnsBlackListAdd; 1047/34361.
	{Name: "Sns.CallbackBlackListAdd", Fields: []string{"CallbackCommand", "PairList"}},
	// doocs BlacklistDeleteCallback; dobyte SnsBlackListDelete; 1047/34362.
	{Name: "Sns.CallbackBlackListDelete", Fields: []string{"CallbackCommand", "PairList"}},

	// Follow. trtc.io/70355.
	{Name: "Follow.CallbackAfterFollowAdd", Fields: []string{
		"CallbackCommand", "From_Account", "FollowList", "EventTime"}},
	// trtc.io/70356 (here To_Account is an array of UserIDs).
	{Name: "Follow.CallbackAfterFollowDelete", Fields: []string{
		"CallbackCommand", "From_Account", "To_Account", "EventTime"}},

	// One-to-one messages.
	// payloads C2C.CallbackBeforeSendMsg.json and .image.json; PROTOCOL 4 ("same as
	// after-send minus SendMsgResult, ErrorInfo, UnreadMsgNum", hence MsgId), 6.1, 6.17;
	// doocs BeforeSendMsgCallback.
	{Name: "C2C.CallbackBeforeSendMsg", Before: true, Fields: []string{
		"CallbackCommand", "From_Account", "To_Account", "MsgSeq", "MsgRandom", "MsgTime",
		"MsgKey", "MsgId", "OnlineOnlyFlag", "MsgBody", "CloudCustomData"}},
	// payload C2C.CallbackAfterSendMsg.json; PROTOCOL 4 (MsgId is in the ZH field table),
	// 6.2; doocs AfterSendMsgCallback.
	{Name: "C2C.CallbackAfterSendMsg", Fields: []string{
		"CallbackCommand", "From_Account", "To_Account", "MsgSeq", "MsgRandom", "MsgTime",
		"MsgKey", "MsgId", "OnlineOnlyFlag", "SendMsgResult", "ErrorInfo", "UnreadMsgNum",
		"MsgBody", "CloudCustomData"}},
	// payload C2C.CallbackAfterMsgReport.json; PROTOCOL 4, 6.14.
	{Name: "C2C.CallbackAfterMsgReport", Fields: []string{
		"CallbackCommand", "Report_Account", "Peer_Account", "LastReadTime", "UnreadMsgNum"}},
	// payload C2C.CallbackAfterMsgWithDraw.json; PROTOCOL 4, 6.7; doocs
	// AfterMsgWithdrawCallback.
	{Name: "C2C.CallbackAfterMsgWithDraw", Fields: []string{
		"CallbackCommand", "From_Account", "To_Account", "MsgKey", "UnreadMsgNum"}},

	// Chatbots.
	// 1047/68952 sample; PROTOCOL 4; UnreadMsgNum from doocs BotOnC2cMessageCallback (the
	// doc sample omits it).
	{Name: "Bot.OnC2CMessage", Fields: []string{
		"CallbackCommand", "From_Account", "To_Account", "MsgSeq", "MsgRandom", "MsgTime",
		"MsgKey", "OnlineOnlyFlag", "SendMsgResult", "ErrorInfo", "UnreadMsgNum", "MsgBody",
		"CloudCustomData", "EventTime"}},
	// 1047/68953 sample. doocs OnGroupMessageBotCallback is not used: its names contradict
	// the doc (AtRobotAccount, MsgRandom on the time, IsPlaceMsg on the topic id).
	{Name: "Bot.OnGroupMessage", Fields: []string{
		"CallbackCommand", "GroupId", "Type", "From_Account", "Operator_Account", "Random",
		"MsgSeq", "MsgTime", "OnlineOnlyFlag", "MsgBody", "AtRobots_Account",
		"CloudCustomData", "EventTime"}},
	// doocs ChatBotOnC2cSignalMessageCallback. Whether IM acts on the answer is
	// unconfirmed (PROTOCOL 2 marks it "?"), so it is not marked Before.
	{Name: "Chatbot.OnC2CSignalMessage", Fields: []string{
		"CallbackCommand", "From_Account", "To_Account", "MsgSeq", "MsgRandom", "MsgKey",
		"EventTime", "Data"}},

	// Groups.
	// payload Group.CallbackBeforeCreateGroup.json (CreateGroupNum); PROTOCOL 4, 6.11;
	// doocs BeforeCreateGroupCallback and dobyte GroupBeforeCreateGroup both spell it
	// CreatedGroupNum, so both spellings are listed.
	{Name: "Group.CallbackBeforeCreateGroup", Before: true, Fields: []string{
		"CallbackCommand", "Operator_Account", "Owner_Account", "Type", "Name",
		"CreateGroupNum", "CreatedGroupNum", "MemberList", "EventTime"}},
	// 1047/34369 sample; doocs AfterCreateGroupCallback; dobyte GroupAfterCreateGroup.
	{Name: "Group.CallbackAfterCreateGroup", Fields: []string{
		"CallbackCommand", "GroupId", "Operator_Account", "Owner_Account", "Type", "Name",
		"MemberList", "UserDefinedDataList", "EventTime"}},
	// PROTOCOL 3; doocs BeforeApplyJoinGroupCallback; dobyte GroupBeforeApplyJoinGroup.
	{Name: "Group.CallbackBeforeApplyJoinGroup", Before: true, Fields: []string{
		"CallbackCommand", "GroupId", "Type", "Requestor_Account", "EventTime"}},
	// payload Group.CallbackBeforeInviteJoinGroup.json; PROTOCOL 6.10; doocs
	// BeforeInviteJoinGroupCallback.
	{Name: "Group.CallbackBeforeInviteJoinGroup", Before: true, Fields: []string{
		"CallbackCommand", "GroupId", "Type", "Operator_Account", "DestinationMembers",
		"EventTime"}},
	// payload Group.CallbackAfterNewMemberJoin.json; PROTOCOL 4, 6.9; doocs
	// AfterNewMemberJoinCallback.
	{Name: "Group.CallbackAfterNewMemberJoin", Fields: []string{
		"CallbackCommand", "GroupId", "Type", "JoinType", "Operator_Account", "NewMemberList"}},
	// doocs AfterMemberExitCallback; PROTOCOL 4. (dobyte tags the exit list
	// "NewMemberList", a copy slip; not used.)
	{Name: "Group.CallbackAfterMemberExit", Fields: []string{
		"CallbackCommand", "GroupId", "Type", "ExitType", "Operator_Account",
		"ExitMemberList", "EventTime"}},
	// payload Group.CallbackBeforeSendMsg.json; PROTOCOL 4, 6.3; doocs
	// BeforeSendGroupMsgCallback.
	{Name: "Group.CallbackBeforeSendMsg", Before: true, Fields: []string{
		"CallbackCommand", "GroupId", "Type", "From_Account", "Operator_Account", "Random",
		"OnlineOnlyFlag", "MsgBody", "CloudCustomData", "TopicId", "EventTime"}},
	// payload Group.CallbackAfterSendMsg.json; PROTOCOL 4, 6.4; doocs
	// AfterSendGroupMsgCallback. TopicId is only guessed by PROTOCOL 4, so left out.
	{Name: "Group.CallbackAfterSendMsg", Fields: []string{
		"CallbackCommand", "GroupId", "Type", "From_Account", "Operator_Account", "Random",
		"MsgSeq", "MsgTime", "OnlineOnlyFlag", "MsgBody", "CloudCustomData", "EventTime"}},
	// doocs AfterGroupFullCallback; dobyte GroupAfterGroupFull.
	{Name: "Group.CallbackAfterGroupFull", Fields: []string{"CallbackCommand", "GroupId"}},
	// doocs AfterGroupDestroyedCallback; dobyte GroupAfterGroupDestroyed; PROTOCOL 4.
	{Name: "Group.CallbackAfterGroupDestroyed", Fields: []string{
		"CallbackCommand", "GroupId", "Type", "Owner_Account", "Name", "MemberList"}},
	// doocs AfterGroupInfoChangedCallback; dobyte GroupAfterGroupInfoChanged; PROTOCOL 4.
	{Name: "Group.CallbackAfterGroupInfoChanged", Fields: []string{
		"CallbackCommand", "GroupId", "Type", "Operator_Account", "Name", "Introduction",
		"Notification", "FaceUrl"}},
	// doocs OnMemberStateChangeCallback.
	{Name: "Group.CallbackOnMemberStateChange", Fields: []string{
		"CallbackCommand", "GroupId", "Type", "EventType", "MemberList"}},
	// payload Group.CallbackSendMsgException.json; PROTOCOL 4, 6.12; doocs
	// SendMsgExceptionCallback.
	{Name: "Group.CallbackSendMsgException", Fields: []string{
		"CallbackCommand", "GroupId", "Type", "From_Account", "Operator_Account", "Random",
		"OnlineOnlyFlag", "MsgBody", "CloudCustomData", "ErrorCode", "ErrorInfo", "EventTime"}},
	// payload Group.CallbackAfterRecallMsg.json; PROTOCOL 4, 6.8; doocs
	// AfterRecallMsgCallback.
	{Name: "Group.CallbackAfterRecallMsg", Fields: []string{
		"CallbackCommand", "Operator_Account", "Type", "GroupId", "MsgSeqList", "TopicId",
		"EventTime"}},
	// doocs BeforeCreateGroupTopicCallback; 1047/49463 sample starts the same way.
	{Name: "Group.CallbackBeforeCreateTopic", Before: true, Fields: []string{
		"CallbackCommand", "Operator_Account", "Type", "Name"}},
	// 1047/49464 sample; doocs AfterCreateGroupTopicCallback.
	{Name: "Group.CallbackAfterCreateTopic", Fields: []string{
		"CallbackCommand", "GroupId", "TopicId", "Operator_Account", "Owner_Account", "Type",
		"Name", "UserDefinedDataList"}},
	// doocs AfterTopicDestroyedCallback (and the older AfterDestroyGroupTopicCallback).
	{Name: "Group.CallbackAfterTopicDestroyed", Fields: []string{
		"CallbackCommand", "GroupId", "Type", "TopicIdList"}},
	// doocs AfterModifyGroupTopicCallback.
	{Name: "Group.CallbackAfterTopicInfoChanged", Fields: []string{
		"CallbackCommand", "GroupId", "Type", "Operator_Account", "Name", "Introduction",
		"Notification", "FaceUrl"}},
	// doocs AfterGroupMemberFieldChangedCallback.
	{Name: "Group.CallbackAfterMemberFieldChanged", Fields: []string{
		"CallbackCommand", "GroupId", "Type", "Operator_Account", "Modified_Account", "Role",
		"NameCard", "EventTime"}},
	// doocs AfterGroupAttrChangedCallback.
	{Name: "Group.CallbackAfterGroupAttrChanged", Fields: []string{
		"CallbackCommand", "GroupId", "Type", "Operator_Account", "OptionType", "GroupAttr",
		"EventTime"}},
	// doocs AfterReadGroupReceiptCallback; PROTOCOL 4.
	{Name: "Group.CallbackAfterReadReceipt", Fields: []string{
		"CallbackCommand", "GroupId", "Type", "GroupMsgReceiptList", "EventTime"}},
	// doocs AfterGroupOwnerChangeCallback.
	{Name: "Group.CallbackAfterChangeGroupOwner", Fields: []string{
		"CallbackCommand", "GroupId", "Type", "Operator_Account", "OldOwner_Account",
		"NewOwner_Account", "EventTime"}},
	// doocs OnDailyGroupQuotaAlarmCallback.
	{Name: "Group.CallbackOnDailyGroupQuotaAlarm", Fields: []string{
		"CallbackCommand", "QuotaUsed", "Quota", "EventTime"}},

	// Moderation. 1047/78240 sample; doocs ContentResultNotifyCallback. Both show no
	// CallbackCommand in the body: it is only in the query.
	{Name: "ContentCallback.ResultNotify", Fields: []string{
		"Scene", "SdkAppId", "From_Account", "ContactItem", "ContentType", "TextContent",
		"FileURL", "MsgID", "CtxcbResult", "CtxcbRequestId", "CtxcbKeywords",
		"CtxcbSuggestion", "CtxcbLabel", "CtxcbSubLabel", "CtxcbSubLabelDesc",
		"CtxcbLibName", "CloudCustomData"}},

	// Official accounts: doocs, the class named per command.
	// BeforeCreateOfficialAccountCallback.
	{Name: "OfficialAccount.CallbackBeforeCreateOfficialAccount", Before: true, Fields: []string{
		"CallbackCommand", "Operator_Account", "Owner_Account", "Name", "EventTime"}},
	// AfterCreateOfficialAccountCallback.
	{Name: "OfficialAccount.CallbackAfterCreateOfficialAccount", Fields: []string{
		"CallbackCommand", "Operator_Account", "Official_Account", "Owner_Account", "Name",
		"EventTime"}},
	// AfterOfficialAccountInfoChangedCallback.
	{Name: "OfficialAccount.CallbackAfterOfficialAccountInfoChanged", Fields: []string{
		"CallbackCommand", "Official_Account", "Operator_Account", "Introduction", "Name",
		"FaceUrl", "Organization", "EventTime"}},
	// AfterOfficialAccountDestroyedCallback.
	{Name: "OfficialAccount.CallbackAfterOfficialAccountDestroyed", Fields: []string{
		"CallbackCommand", "Official_Account", "Owner_Account", "Name", "EventTime"}},
	// BeforeAddOfficialAccountSubscriberCallback.
	{Name: "OfficialAccount.CallbackBeforeAddSubscriber", Before: true, Fields: []string{
		"CallbackCommand", "Official_Account", "Operator_Account", "SubscribeAccountList",
		"EventTime"}},
	// AfterAddOfficialAccountSubscriberCallback.
	{Name: "OfficialAccount.CallbackAfterAddSubscriber", Fields: []string{
		"CallbackCommand", "Official_Account", "Operator_Account", "SubscribeAccountList",
		"EventTime"}},
	// AfterOfficialAccountFullCallback.
	{Name: "OfficialAccount.CallbackAfterOfficialAccountFull", Fields: []string{
		"CallbackCommand", "Official_Account", "EventTime"}},
	// AfterDeleteOfficialAccountSubscriberCallback.
	{Name: "OfficialAccount.CallbackAfterDeleteSubscriber", Fields: []string{
		"CallbackCommand", "Official_Account", "Operator_Account", "SubscribeAccountList",
		"EventTime"}},
	// BeforeSendOfficialAccountMsgCallback.
	{Name: "OfficialAccount.CallbackBeforeSendMsg", Before: true, Fields: []string{
		"CallbackCommand", "Official_Account", "OnlineOnlyFlag", "MsgBody", "CloudCustomData",
		"EventTime"}},
	// AfterSendOfficialAccountMsgCallback.
	{Name: "OfficialAccount.CallbackAfterSendMsg", Fields: []string{
		"CallbackCommand", "Official_Account", "MsgKey", "MsgTime", "OnlineOnlyFlag",
		"MsgBody", "CloudCustomData", "EventTime"}},
	// AfterOfficialAccountMsgWithdrawCallback.
	{Name: "OfficialAccount.CallbackAfterMsgWithDraw", Fields: []string{
		"CallbackCommand", "Official_Account", "WithdrawMsgList", "EventTime"}},

	// Push plugin. The body is a batch, {"Events": [...]}, of 1 to 100 events that each
	// carry CallbackCommand, EventType, PushStage and so on (doocs OfflinePushCallback and
	// AllMemberPushCallback model one event): rules reach them through Events.
	// PROTOCOL 2; 1047/67552.
	{Name: "Push.OfflinePush", Fields: []string{"Events"}},
	// 1047/67551.
	{Name: "Push.AllMemberPush", Fields: []string{"Events"}},
}

// tcByName indexes tcCommands for LookupCommand.
var tcByName = func() map[string]int {
	m := make(map[string]int, len(tcCommands))
	for i, c := range tcCommands {
		m[c.Name] = i
	}
	return m
}()

// Commands returns every known command, in the order of PROTOCOL.md section 2. The result
// is a copy: callers may keep or change it without touching the table.
func Commands() []CommandInfo {
	out := make([]CommandInfo, len(tcCommands))
	for i, c := range tcCommands {
		out[i] = tcCopy(c)
	}
	return out
}

// LookupCommand finds a command by exact name. Tencent's names are case-sensitive (note
// C2C.CallbackAfterMsgWithDraw), so no folding is done here; Suggest is for near misses.
func LookupCommand(name string) (CommandInfo, bool) {
	i, ok := tcByName[name]
	if !ok {
		return CommandInfo{}, false
	}
	return tcCopy(tcCommands[i]), true
}

// CommandsWithField returns the names of the commands whose body carries field, in the
// order of Commands. Commands with an unknown body are not included: nothing is known
// about them.
func CommandsWithField(field string) []string {
	var names []string
	for _, c := range tcCommands {
		if slices.Contains(c.Fields, field) {
			names = append(names, c.Name)
		}
	}
	return names
}

// KnownField reports whether any known command carries field at the top level.
func KnownField(field string) bool {
	for _, c := range tcCommands {
		if slices.Contains(c.Fields, field) {
			return true
		}
	}
	return false
}

// CommonField reports whether field is carried by every command, so that a rule on a
// route without commands may use it without a warning. In practice only CallbackCommand
// is. Two kinds of command are not counted: those with an unknown body, and those whose
// documented body has no top-level CallbackCommand at all (ContentCallback.ResultNotify,
// and the Push.* batch whose events each carry one). Counting the latter would leave no
// field common and turn every command-free rule into a warning; a route that names them
// is still checked field by field.
func CommonField(field string) bool {
	counted := false
	for _, c := range tcCommands {
		if !slices.Contains(c.Fields, "CallbackCommand") {
			continue
		}
		if !slices.Contains(c.Fields, field) {
			return false
		}
		counted = true
	}
	return counted
}

// KnownFields returns every top-level field name any command carries, sorted, without
// repeats: the candidates for a "did you mean" on an unknown field.
func KnownFields() []string {
	var fields []string
	for _, c := range tcCommands {
		fields = append(fields, c.Fields...)
	}
	slices.Sort(fields)
	return slices.Compact(fields)
}

// Suggest returns the candidate closest to name, for a "did you mean", when it is close
// enough to be a plausible typo. Distance is Damerau-Levenshtein (optimal string alignment:
// insertions, deletions, substitutions and swaps of adjacent characters each cost 1),
// compared case-insensitively because case slips are the commonest typo. A candidate is
// close enough when the distance is at most a quarter of name's length, and at least 1:
// To_Acount -> To_Account (1 edit in 9) and C2C.CallbackAfterSendMessage ->
// C2C.CallbackAfterSendMsg (4 in 28) qualify, while two different short words such as
// Type and Name (2 in 4) do not. On a tie the earlier candidate wins, so a caller that
// passes a sorted or documented order gets a stable answer.
func Suggest(name string, candidates []string) (string, bool) {
	if name == "" {
		return "", false
	}
	a := []rune(strings.ToLower(name))
	limit := max(1, len(a)/4)
	best, bestDist, found := "", limit+1, false
	for _, c := range candidates {
		b := []rune(strings.ToLower(c))
		if len(b) == 0 || tcAbs(len(b)-len(a)) >= bestDist {
			continue // the length difference alone is too many edits
		}
		if d := tcDistance(a, b); d < bestDist {
			best, bestDist, found = c, d, true
		}
	}
	return best, found
}

// tcDistance is the optimal-string-alignment Damerau-Levenshtein distance between a and b,
// kept to three rows since Suggest runs it against every known name.
func tcDistance(a, b []rune) int {
	prev2 := make([]int, len(b)+1) // row i-2
	prev := make([]int, len(b)+1)  // row i-1
	cur := make([]int, len(b)+1)   // row i
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// tcCopy returns c with its own Fields, keeping nil (unknown) apart from empty.
func tcCopy(c CommandInfo) CommandInfo {
	c.Fields = slices.Clone(c.Fields)
	return c
}

func tcAbs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
