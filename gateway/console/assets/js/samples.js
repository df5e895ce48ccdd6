// Sample callbacks for the rules playground, as Tencent IM sends them (from Tencent's
// documentation of each command).
export const samples = [
  {name: 'C2C.CallbackAfterSendMsg', body: {
    CallbackCommand: 'C2C.CallbackAfterSendMsg', From_Account: 'jared', To_Account: 'Jonh', MsgSeq: 48374,
    MsgRandom: 2837546, MsgTime: 1557481126, MsgKey: '48374_2837546_1557481126', OnlineOnlyFlag: 1,
    SendMsgResult: 0, ErrorInfo: 'send msg succeed', UnreadMsgNum: 7,
    MsgBody: [{MsgType: 'TIMTextElem', MsgContent: {Text: 'red packet'}}], CloudCustomData: 'your cloud custom data'}},
  {name: 'C2C.CallbackAfterSendMsg (failed)', body: {
    CallbackCommand: 'C2C.CallbackAfterSendMsg', From_Account: 'alice', To_Account: 'bob', MsgSeq: 48375,
    MsgRandom: 2837547, MsgTime: 1557481127, MsgKey: '48375_2837547_1557481127', OnlineOnlyFlag: 0,
    SendMsgResult: 20006, ErrorInfo: 'blocked by the sender', UnreadMsgNum: 0,
    MsgBody: [{MsgType: 'TIMTextElem', MsgContent: {Text: 'hello'}}]}},
  {name: 'C2C.CallbackBeforeSendMsg', body: {
    CallbackCommand: 'C2C.CallbackBeforeSendMsg', From_Account: 'jared', To_Account: 'John', MsgSeq: 48374,
    MsgRandom: 2837546, MsgTime: 1557481126, MsgKey: '48374_2837546_1557481126', OnlineOnlyFlag: 1,
    MsgBody: [{MsgType: 'TIMTextElem', MsgContent: {Text: 'red packet'}}], CloudCustomData: 'your cloud custom data'}},
  {name: 'Group.CallbackAfterSendMsg', body: {
    CallbackCommand: 'Group.CallbackAfterSendMsg', GroupId: '@TGS#2J4SZEAEL', Type: 'Public', From_Account: 'jared',
    Operator_Account: 'admin', Random: 123456, MsgSeq: 123, MsgTime: 1490686222, OnlineOnlyFlag: 1,
    MsgBody: [{MsgType: 'TIMTextElem', MsgContent: {Text: 'red packet'}}], CloudCustomData: 'your cloud custom data',
    EventTime: '1670574414123'}},
  {name: 'State.StateChange', body: {
    CallbackCommand: 'State.StateChange', EventTime: 1629883332497,
    Info: {Action: 'Login', To_Account: 'testuser316', Reason: 'Register'},
    KickedDevice: [{Platform: 'Windows'}, {Platform: 'Android'}]}},
];
