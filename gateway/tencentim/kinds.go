package tencentim

import "slices"

// Kind is the JSON type of a callback body field's value.
type Kind string

// The kinds of JSON value a field can hold. Tencent's bodies have no booleans: flags are
// numbers (OnlineOnlyFlag: 0 or 1).
const (
	KindNumber Kind = "number"
	KindString Kind = "string"
	KindList   Kind = "list"
	KindObject Kind = "object"
)

// fieldKinds is the JSON type of the top-level fields whose type is the same in every command
// that carries them, as the sources commands.go cites show it (the sample payloads, the
// documentation's samples and field tables, doocs' Java types). The linter uses it to refuse
// a comparison that can never hold, such as SendMsgResult != "0". A field whose type varies
// or is not shown in a source is left out, so nothing is said about it: EventTime is a
// number in some of Tencent's samples and a string in others.
var fieldKinds = map[string]Kind{
	// Numbers.
	"SendMsgResult": KindNumber, "MsgSeq": KindNumber, "MsgRandom": KindNumber,
	"MsgTime": KindNumber, "OnlineOnlyFlag": KindNumber, "UnreadMsgNum": KindNumber,
	"Random": KindNumber, "ErrorCode": KindNumber, "CreateGroupNum": KindNumber,
	"CreatedGroupNum": KindNumber, "LastReadTime": KindNumber, "ForceFlag": KindNumber,
	"ForceAddFlags": KindNumber, "Request": KindNumber, "Limit": KindNumber,

	// Strings.
	"CallbackCommand": KindString, "From_Account": KindString, "To_Account": KindString,
	"MsgKey": KindString, "MsgId": KindString, "CloudCustomData": KindString,
	"ErrorInfo": KindString, "GroupId": KindString, "Type": KindString,
	"Operator_Account": KindString, "Owner_Account": KindString,
	"Requester_Account": KindString, "Report_Account": KindString,
	"Peer_Account": KindString, "Admin_Account": KindString, "Name": KindString,
	"TopicId": KindString, "JoinType": KindString, "ExitType": KindString,
	"AddType": KindString, "ClientCmd": KindString, "ServiceName": KindString,
	"Command": KindString, "Introduction": KindString, "Notification": KindString,
	"FaceUrl": KindString,

	// Lists and objects.
	"MsgBody": KindList, "MemberList": KindList, "NewMemberList": KindList,
	"ExitMemberList": KindList, "PairList": KindList, "KickedDevice": KindList,
	"DestinationMembers": KindList, "MsgSeqList": KindList, "FriendItem": KindList,
	"ResponseFriendItem": KindList, "ProfileItem": KindList,
	"Info": KindObject,
}

// kindExceptions are the commands in which a field of fieldKinds has another type.
var kindExceptions = map[string]map[string]Kind{
	// trtc.io/70356: the accounts no longer followed, a list of UserIDs.
	"Follow.CallbackAfterFollowDelete": {"To_Account": KindList},
}

// FieldKind returns the JSON type of field in the body of command, when the command is
// known, carries the field, and the field's type is known.
func FieldKind(command, field string) (Kind, bool) {
	i, ok := byName[command]
	if !ok || !slices.Contains(commands[i].Fields, field) {
		return "", false
	}
	if k, ok := kindExceptions[command][field]; ok {
		return k, true
	}
	k, ok := fieldKinds[field]
	return k, ok
}
