package tencentim

import "slices"

// This file is what Fanout knows about Tencent IM callback commands: which exist, which are
// "before" callbacks whose answer decides the event, and which top-level JSON fields each
// body carries. The receiver uses it to bound its metric labels (a command Tencent does not
// document counts as "other"); the rules' linter uses it to warn about rules that test a
// field a route's callbacks never carry (the field is nil at run time, and nil != 0 is
// true) and to suggest a spelling for unknown names.
//
// Sources, cited per command below:
//   - payload: a file in internal/fanouttest/tencentim/, Tencent's published sample bodies
//     (every top-level key of every payload is in its command's Fields; commands_test.go
//     checks it).
//   - doocs: doocs/qcloud-im-server-sdk-java,
//     src/main/java/io/github/doocs/im/model/callback/<Class>.java (@JsonProperty names).
//   - dobyte: dobyte/tencent-im, callback/types.go (json tags).
//   - Tencent's documentation pages, by id: 1047/N is
//     https://www.tencentcloud.com/document/product/1047/N; 269/N is its Chinese edition,
//     https://cloud.tencent.com/document/product/269/N; trtc.io/N is
//     https://trtc.io/document/N. The callback overview is 1047/34354 and the command list
//     1047/34355.
//
// Fields holds only names found in a source. Where sources disagree on a spelling and
// neither is clearly a slip, both are listed, so that the linter stays quiet about either.

// CommandInfo describes one Tencent IM callback command.
type CommandInfo struct {
	Name   string   // e.g. "C2C.CallbackAfterSendMsg"
	Before bool     // a "before" callback whose answer decides the outcome
	Fields []string // top-level JSON body fields it carries; nil means unknown, not none
}

// commands lists every command of Tencent's command list (1047/34355), in that order. A nil
// Fields means the body is not documented in any source we have, so the linter must not
// warn about any field for that command. The list also names two "message extension"
// callbacks (trtc.io/76006, trtc.io/76007) whose command strings are unconfirmed; they are
// left out rather than guessed.
var commands = []CommandInfo{
	// Operations. payload Alert.RequestOverLimit.json; trtc.io/60256.
	{Name: "Alert.RequestOverLimit", Fields: []string{
		"CallbackCommand", "ServiceName", "Command", "Request", "Limit"}},

	// Online status. payload State.StateChange.json; 1047/34357; doocs
	// StateChangeCallback.
	{Name: "State.StateChange", Fields: []string{
		"CallbackCommand", "EventTime", "Info", "KickedDevice"}},

	// Profile. payload Profile.CallbackPortraitSet.json; 1047/48733.
	{Name: "Profile.CallbackPortraitSet", Fields: []string{
		"CallbackCommand", "Operator_Account", "From_Account", "EventTime", "ProfileItem"}},

	// Relationship chain.
	// payload Sns.CallbackPrevFriendAdd.json; 1047/43468; doocs PrevFriendAddCallback.
	{Name: "Sns.CallbackPrevFriendAdd", Before: true, Fields: []string{
		"CallbackCommand", "Requester_Account", "From_Account", "FriendItem", "AddType",
		"ForceAddFlags", "EventTime"}},
	// doocs PrevFriendResponseCallback.
	{Name: "Sns.CallbackPrevFriendResponse", Before: true, Fields: []string{
		"CallbackCommand", "Requester_Account", "From_Account", "ResponseFriendItem",
		"EventTime"}},
	// payload Sns.CallbackFriendAdd.json; 1047/34359; doocs FriendAddCallback;
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
	// payloads C2C.CallbackBeforeSendMsg.json and .image.json; 1047/34364 (the body is the
	// after-send one minus SendMsgResult, ErrorInfo and UnreadMsgNum, hence MsgId); doocs
	// BeforeSendMsgCallback.
	{Name: "C2C.CallbackBeforeSendMsg", Before: true, Fields: []string{
		"CallbackCommand", "From_Account", "To_Account", "MsgSeq", "MsgRandom", "MsgTime",
		"MsgKey", "MsgId", "OnlineOnlyFlag", "MsgBody", "CloudCustomData"}},
	// payload C2C.CallbackAfterSendMsg.json; 1047/34365 (MsgId is in the field table of
	// 269/2716); doocs AfterSendMsgCallback.
	{Name: "C2C.CallbackAfterSendMsg", Fields: []string{
		"CallbackCommand", "From_Account", "To_Account", "MsgSeq", "MsgRandom", "MsgTime",
		"MsgKey", "MsgId", "OnlineOnlyFlag", "SendMsgResult", "ErrorInfo", "UnreadMsgNum",
		"MsgBody", "CloudCustomData"}},
	// payload C2C.CallbackAfterMsgReport.json; 1047/43465.
	{Name: "C2C.CallbackAfterMsgReport", Fields: []string{
		"CallbackCommand", "Report_Account", "Peer_Account", "LastReadTime", "UnreadMsgNum"}},
	// payload C2C.CallbackAfterMsgWithDraw.json; 1047/43466; doocs
	// AfterMsgWithdrawCallback.
	{Name: "C2C.CallbackAfterMsgWithDraw", Fields: []string{
		"CallbackCommand", "From_Account", "To_Account", "MsgKey", "UnreadMsgNum"}},

	// Chatbots.
	// 1047/68952 sample; UnreadMsgNum from doocs BotOnC2cMessageCallback (the
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
	// unconfirmed (only doocs' constants name the command), so it is not marked Before.
	{Name: "Chatbot.OnC2CSignalMessage", Fields: []string{
		"CallbackCommand", "From_Account", "To_Account", "MsgSeq", "MsgRandom", "MsgKey",
		"EventTime", "Data"}},

	// Groups.
	// payload Group.CallbackBeforeCreateGroup.json (CreateGroupNum); 269/1662;
	// doocs BeforeCreateGroupCallback and dobyte GroupBeforeCreateGroup both spell it
	// CreatedGroupNum, so both spellings are listed.
	{Name: "Group.CallbackBeforeCreateGroup", Before: true, Fields: []string{
		"CallbackCommand", "Operator_Account", "Owner_Account", "Type", "Name",
		"CreateGroupNum", "CreatedGroupNum", "MemberList", "EventTime"}},
	// 1047/34369 sample; doocs AfterCreateGroupCallback; dobyte GroupAfterCreateGroup.
	{Name: "Group.CallbackAfterCreateGroup", Fields: []string{
		"CallbackCommand", "GroupId", "Operator_Account", "Owner_Account", "Type", "Name",
		"MemberList", "UserDefinedDataList", "EventTime"}},
	// 1047/34370; doocs BeforeApplyJoinGroupCallback; dobyte GroupBeforeApplyJoinGroup.
	{Name: "Group.CallbackBeforeApplyJoinGroup", Before: true, Fields: []string{
		"CallbackCommand", "GroupId", "Type", "Requestor_Account", "EventTime"}},
	// payload Group.CallbackBeforeInviteJoinGroup.json; 1047/34371; doocs
	// BeforeInviteJoinGroupCallback.
	{Name: "Group.CallbackBeforeInviteJoinGroup", Before: true, Fields: []string{
		"CallbackCommand", "GroupId", "Type", "Operator_Account", "DestinationMembers",
		"EventTime"}},
	// payload Group.CallbackAfterNewMemberJoin.json; 1047/34372; doocs
	// AfterNewMemberJoinCallback.
	{Name: "Group.CallbackAfterNewMemberJoin", Fields: []string{
		"CallbackCommand", "GroupId", "Type", "JoinType", "Operator_Account", "NewMemberList"}},
	// doocs AfterMemberExitCallback; 1047/34373. (dobyte tags the exit list
	// "NewMemberList", a copy slip; not used.)
	{Name: "Group.CallbackAfterMemberExit", Fields: []string{
		"CallbackCommand", "GroupId", "Type", "ExitType", "Operator_Account",
		"ExitMemberList", "EventTime"}},
	// payload Group.CallbackBeforeSendMsg.json; 1047/34374; doocs
	// BeforeSendGroupMsgCallback.
	{Name: "Group.CallbackBeforeSendMsg", Before: true, Fields: []string{
		"CallbackCommand", "GroupId", "Type", "From_Account", "Operator_Account", "Random",
		"OnlineOnlyFlag", "MsgBody", "CloudCustomData", "TopicId", "EventTime"}},
	// payload Group.CallbackAfterSendMsg.json; 1047/34375; doocs
	// AfterSendGroupMsgCallback. No source shows TopicId here, so it is left out.
	{Name: "Group.CallbackAfterSendMsg", Fields: []string{
		"CallbackCommand", "GroupId", "Type", "From_Account", "Operator_Account", "Random",
		"MsgSeq", "MsgTime", "OnlineOnlyFlag", "MsgBody", "CloudCustomData", "EventTime"}},
	// doocs AfterGroupFullCallback; dobyte GroupAfterGroupFull.
	{Name: "Group.CallbackAfterGroupFull", Fields: []string{"CallbackCommand", "GroupId"}},
	// doocs AfterGroupDestroyedCallback; dobyte GroupAfterGroupDestroyed; 1047/34377.
	{Name: "Group.CallbackAfterGroupDestroyed", Fields: []string{
		"CallbackCommand", "GroupId", "Type", "Owner_Account", "Name", "MemberList"}},
	// doocs AfterGroupInfoChangedCallback; dobyte GroupAfterGroupInfoChanged; 1047/34378.
	{Name: "Group.CallbackAfterGroupInfoChanged", Fields: []string{
		"CallbackCommand", "GroupId", "Type", "Operator_Account", "Name", "Introduction",
		"Notification", "FaceUrl"}},
	// doocs OnMemberStateChangeCallback.
	{Name: "Group.CallbackOnMemberStateChange", Fields: []string{
		"CallbackCommand", "GroupId", "Type", "EventType", "MemberList"}},
	// payload Group.CallbackSendMsgException.json; 1047/49462; doocs
	// SendMsgExceptionCallback.
	{Name: "Group.CallbackSendMsgException", Fields: []string{
		"CallbackCommand", "GroupId", "Type", "From_Account", "Operator_Account", "Random",
		"OnlineOnlyFlag", "MsgBody", "CloudCustomData", "ErrorCode", "ErrorInfo", "EventTime"}},
	// payload Group.CallbackAfterRecallMsg.json; trtc.io/46979; doocs
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
	// doocs AfterReadGroupReceiptCallback; 1047/60395.
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
	// 269/102567; 1047/67552.
	{Name: "Push.OfflinePush", Fields: []string{"Events"}},
	// 1047/67551.
	{Name: "Push.AllMemberPush", Fields: []string{"Events"}},
}

// byName indexes commands for LookupCommand.
var byName = func() map[string]int {
	m := make(map[string]int, len(commands))
	for i, c := range commands {
		m[c.Name] = i
	}
	return m
}()

// Commands returns every known command, in the order of Tencent's command list. The result
// is a copy: callers may keep or change it without touching the table.
func Commands() []CommandInfo {
	out := make([]CommandInfo, len(commands))
	for i, c := range commands {
		out[i] = copyInfo(c)
	}
	return out
}

// LookupCommand finds a command by exact name. Tencent's names are case-sensitive (note
// C2C.CallbackAfterMsgWithDraw), so no folding is done here; rules.Suggest is for near misses.
func LookupCommand(name string) (CommandInfo, bool) {
	i, ok := byName[name]
	if !ok {
		return CommandInfo{}, false
	}
	return copyInfo(commands[i]), true
}

// CommandsWithField returns the names of the commands whose body carries field, in the
// order of Commands. Commands with an unknown body are not included: nothing is known
// about them.
func CommandsWithField(field string) []string {
	var names []string
	for _, c := range commands {
		if slices.Contains(c.Fields, field) {
			names = append(names, c.Name)
		}
	}
	return names
}

// KnownField reports whether any known command carries field at the top level.
func KnownField(field string) bool {
	for _, c := range commands {
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
	for _, c := range commands {
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
	for _, c := range commands {
		fields = append(fields, c.Fields...)
	}
	slices.Sort(fields)
	return slices.Compact(fields)
}

// copyInfo returns c with its own Fields, keeping nil (unknown) apart from empty.
func copyInfo(c CommandInfo) CommandInfo {
	c.Fields = slices.Clone(c.Fields)
	return c
}
